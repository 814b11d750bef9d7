"""The demo network's institutions and labs, modelled on Xi'an's shared-instrument network.

Real universities, institutes, hospitals and companies of the city, a crowd of generated
small technology firms, state and provincial key labs, and shared testing centres.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from instruments.models import InstitutionKind


@dataclass(frozen=True)
class InstitutionSpec:
    code: str
    name: str
    kind: InstitutionKind
    campuses: tuple[str, ...] = ("Main Campus",)
    key_labs: int = 0  # how many provincial key labs beyond the state ones named below


@dataclass(frozen=True)
class LabSpec:
    code: str
    name: str
    institution: str
    is_key_lab: bool
    weight: float  # share of the network's instruments
    groups: tuple[str, ...]  # category groups it focuses on; empty means all


U, I, H, C = (  # noqa: E741 (short names keep the table below readable)
    InstitutionKind.university,
    InstitutionKind.institute,
    InstitutionKind.hospital,
    InstitutionKind.company,
)

# fmt: off
INSTITUTIONS: tuple[InstitutionSpec, ...] = (
    InstitutionSpec("XJTU", "Xi'an Jiaotong University", U, ("Xingqing Campus", "Yanta Campus", "Innovation Harbour"), 12),
    InstitutionSpec("NWPU", "Northwestern Polytechnical University", U, ("Chang'an Campus", "Youyi Campus"), 10),
    InstitutionSpec("XIDIAN", "Xidian University", U, ("South Campus", "North Campus"), 7),
    InstitutionSpec("NWU", "Northwest University", U, ("Chang'an Campus", "Taibai Campus"), 7),
    InstitutionSpec("SNNU", "Shaanxi Normal University", U, ("Chang'an Campus", "Yanta Campus"), 6),
    InstitutionSpec("CHD", "Chang'an University", U, ("Weishui Campus", "Main Campus"), 6),
    InstitutionSpec("XAUT", "Xi'an University of Technology", U, ("Jinhua Campus", "Qujiang Campus"), 4),
    InstitutionSpec("XAUAT", "Xi'an University of Architecture and Technology", U, ("Yanta Campus", "Caotang Campus"), 4),
    InstitutionSpec("NWAFU", "Northwest A&F University", U, ("Yangling North Campus", "Yangling South Campus"), 6),
    InstitutionSpec("FMMU", "Air Force Medical University", U, ("Changle West Road Campus",), 5),
    InstitutionSpec("XUST", "Xi'an University of Science and Technology", U, ("Yanta Campus", "Lintong Campus"), 3),
    InstitutionSpec("SUST", "Shaanxi University of Science and Technology", U, ("Weiyang Campus",), 3),
    InstitutionSpec("XPU", "Xi'an Polytechnic University", U, ("Lintong Campus", "Jinhua Campus"), 2),
    InstitutionSpec("XSYU", "Xi'an Shiyou University", U, ("Yanta Campus", "Huyi Campus"), 2),
    InstitutionSpec("XATU", "Xi'an Technological University", U, ("Weiyang Campus",), 2),
    InstitutionSpec("XUPT", "Xi'an University of Posts and Telecommunications", U, ("Chang'an Campus",), 2),
    InstitutionSpec("XIOPM", "CAS Xi'an Institute of Optics and Precision Mechanics", I, ("New Industrial Park",), 4),
    InstitutionSpec("IEECAS", "CAS Institute of Earth Environment", I, ("Yanxiang Road",), 3),
    InstitutionSpec("NTSC", "CAS National Time Service Center", I, ("Lintong",), 1),
    InstitutionSpec("NIN", "Northwest Institute for Non-ferrous Metal Research", I, ("Weiyang Road",), 3),
    InstitutionSpec("TPRI", "Xi'an Thermal Power Research Institute", I, ("Xingqing Road",), 2),
    InstitutionSpec("XMCRI", "Xi'an Modern Chemistry Research Institute", I, ("Zhangba Road",), 2),
    InstitutionSpec("CAST-XA", "CAST Xi'an Institute of Space Radio Technology", I, ("Xi'an Aerospace Base",), 2),
    InstitutionSpec("SXIM", "Shaanxi Institute of Microbiology", I, ("Xiying Road",), 1),
    InstitutionSpec("XJTU-H1", "The First Affiliated Hospital of Xi'an Jiaotong University", H, ("Yanta West Road",), 2),
    InstitutionSpec("XJTU-H2", "The Second Affiliated Hospital of Xi'an Jiaotong University", H, ("Xiwu Road",), 2),
    InstitutionSpec("XIJING", "Xijing Hospital", H, ("Changle West Road",), 2),
    InstitutionSpec("TANGDU", "Tangdu Hospital", H, ("Xinsi Road",), 1),
    InstitutionSpec("SXPH", "Shaanxi Provincial People's Hospital", H, ("Youyi West Road",), 1),
    InstitutionSpec("XACH", "Xi'an Central Hospital", H, ("Xiwu Road",), 0),
    InstitutionSpec("LONGI", "LONGi Green Energy Technology", C, ("Xi'an Economic and Technological Development Zone",)),
    InstitutionSpec("AVIC-XAC", "AVIC Xi'an Aircraft Industry", C, ("Yanliang",)),
    InstitutionSpec("BLT", "Xi'an Bright Laser Technologies", C, ("High-tech Zone",)),
    InstitutionSpec("WST", "Western Superconducting Technologies", C, ("Economic and Technological Development Zone",)),
    InstitutionSpec("SXCC", "Shaanxi Coal and Chemical Industry Group", C, ("High-tech Zone",)),
    InstitutionSpec("XD", "China XD Group", C, ("Daqing Road",)),
    InstitutionSpec("XIAN-JANSSEN", "Xian Janssen Pharmaceutical", C, ("Gaoxin Road",)),
    InstitutionSpec("XHTZ", "Xi'an Hi-tech Zone Innovation Incubator", C, ("Zhangba Street", "Software New Town")),
)

# (code, name, institution code, focus groups)
STATE_KEY_LABS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("XJTU-SKL-MSE", "State Key Laboratory for Manufacturing Systems Engineering", "XJTU", ("mat", "xray", "elec")),
    ("XJTU-SKL-EIPE", "State Key Laboratory of Electrical Insulation and Power Equipment", "XJTU", ("elec", "thermal", "spec")),
    ("XJTU-SKL-MFPE", "State Key Laboratory of Multiphase Flow in Power Engineering", "XJTU", ("thermal", "spec", "chrom")),
    ("XJTU-SKL-MBM", "State Key Laboratory for Mechanical Behavior of Materials", "XJTU", ("em", "mat", "xray")),
    ("XJTU-SKL-SVSM", "State Key Laboratory for Strength and Vibration of Mechanical Structures", "XJTU", ("mat", "xray")),
    ("NWPU-SKL-SP", "State Key Laboratory of Solidification Processing", "NWPU", ("em", "xray", "thermal", "mat")),
    ("NWPU-SKL-TSC", "State Key Laboratory of Thermostructural Composite Materials", "NWPU", ("em", "mat", "thermal")),
    ("NWPU-SKL-AFD", "National Key Laboratory of Aerodynamic Design and Research", "NWPU", ("elec", "mat")),
    ("XIDIAN-SKL-ISN", "State Key Laboratory of Integrated Services Networks", "XIDIAN", ("elec",)),
    ("XIDIAN-SKL-WBG", "National Key Laboratory of Wide Bandgap Semiconductor Devices", "XIDIAN", ("elec", "em", "xray")),
    ("XIDIAN-SKL-AM", "National Key Laboratory of Antennas and Microwave Technology", "XIDIAN", ("elec",)),
    ("NWU-SKL-CD", "State Key Laboratory of Continental Dynamics", "NWU", ("ms", "xray", "spec")),
    ("SNNU-SKL-PSO", "National Key Laboratory of Photoelectric Materials", "SNNU", ("spec", "xray", "em")),
    ("CHD-SKL-RE", "State Key Laboratory of Road Engineering Safety", "CHD", ("mat", "xray")),
    ("XAUAT-SKL-GB", "State Key Laboratory of Green Building in Western China", "XAUAT", ("mat", "thermal")),
    ("NWAFU-SKL-CSB", "State Key Laboratory of Crop Stress Biology for Arid Areas", "NWAFU", ("seq", "cell", "ms")),
    ("NWAFU-SKL-SEE", "State Key Laboratory of Soil Erosion and Dryland Farming", "NWAFU", ("ms", "spec", "chrom")),
    ("FMMU-SKL-CB", "State Key Laboratory of Cancer Biology", "FMMU", ("cell", "seq", "ms")),
    ("FMMU-SKL-MS", "State Key Laboratory of Military Stomatology", "FMMU", ("cell", "em", "xray")),
    ("XIOPM-SKL-TOP", "State Key Laboratory of Transient Optics and Photonics", "XIOPM", ("elec", "spec")),
    ("IEECAS-SKL-LQG", "State Key Laboratory of Loess and Quaternary Geology", "IEECAS", ("ms", "xray", "spec")),
    ("NTSC-KL-TF", "Key Laboratory of Time and Frequency Standards", "NTSC", ("elec",)),
    ("NIN-SKL-PM", "State Key Laboratory of Porous Metal Materials", "NIN", ("em", "mat", "xray")),
    ("XMCRI-SKL-FE", "Science and Technology on Combustion and Explosion Laboratory", "XMCRI", ("thermal", "chrom", "spec")),
    ("CAST-XA-SKL-SM", "National Key Laboratory of Space Microwave Technology", "CAST-XA", ("elec",)),
)
# fmt: on

THEMES: dict[str, tuple[str, ...]] = {
    "mat": (
        "Advanced Functional Materials",
        "Metal Additive Manufacturing",
        "High-temperature Alloys",
        "Composite Materials",
        "Welding and Joining",
        "Surface Engineering",
        "Powder Metallurgy",
    ),
    "em": ("Nanostructured Materials", "Microstructure Characterisation", "Thin Films"),
    "xray": ("Crystal Materials", "Energy Materials", "Mineral Resources"),
    "elec": (
        "Microwave Photonics",
        "Power Electronics",
        "Integrated Circuits",
        "Intelligent Sensing",
        "Optoelectronic Devices",
        "Terahertz Technology",
    ),
    "spec": ("Photocatalysis", "Laser Spectroscopy", "Environmental Monitoring"),
    "chrom": ("Natural Medicinal Chemistry", "Food Safety", "Green Chemical Engineering"),
    "ms": ("Proteomics", "Metabolomics", "Isotope Geochemistry", "Trace Element Analysis"),
    "nmr": ("Structural Chemistry", "Molecular Imaging"),
    "thermal": ("Energy Storage", "Clean Combustion", "Polymer Processing"),
    "cell": (
        "Tumour Biology",
        "Stem Cells and Regenerative Medicine",
        "Immunology",
        "Neuroscience",
        "Infection and Immunity",
    ),
    "seq": (
        "Animal Genetics",
        "Plant Molecular Breeding",
        "Microbial Resources",
        "Precision Medicine",
    ),
}

# Groups a kind of institution leans to, for labs without a named focus.
KIND_GROUPS: dict[InstitutionKind, tuple[str, ...]] = {
    InstitutionKind.university: tuple(THEMES),
    InstitutionKind.institute: ("mat", "em", "xray", "elec", "spec", "ms", "thermal"),
    InstitutionKind.hospital: ("cell", "seq", "ms", "chrom", "nmr"),
    InstitutionKind.company: ("mat", "em", "xray", "chrom", "spec", "thermal", "elec"),
    InstitutionKind.small_company: ("chrom", "spec", "mat", "thermal", "elec", "seq"),
}

SMALL_FIRM_WORDS = (
    "Ruixin", "Huaxing", "Zhongke", "Tianyuan", "Qinchuang", "Gaoxin", "Fengdong", "Hanguang",
    "Yanta", "Weiyang", "Baqiao", "Qujiang", "Chanba", "Lintong", "Zhuque", "Daming", "Taibai",
    "Zhongnan", "Xingqing", "Jinhua", "Ruiying", "Boyuan", "Kaida", "Xinrui", "Hengtong", "Huayu",
    "Aoxiang", "Tengfei", "Guangxin", "Shengyuan",
)  # fmt: skip
SMALL_FIRM_FIELDS = (
    "Photonics", "New Materials", "Biotechnology", "Semiconductor", "New Energy",
    "Analytical Technology", "Medical Devices", "Microelectronics", "Intelligent Sensing",
    "Additive Manufacturing", "Environmental Testing", "Pharmaceutical", "Precision Instruments",
    "Aerospace Components", "Battery Technology", "Testing and Certification",
)  # fmt: skip


def small_companies(rng: random.Random, count: int) -> list[InstitutionSpec]:
    """Generated small technology firms, flagged as eligible for innovation vouchers."""
    names: set[str] = set()
    firms: list[InstitutionSpec] = []
    while len(firms) < count:
        prefix = rng.choice(("Xi'an", "Xi'an", "Shaanxi"))
        name = f"{prefix} {rng.choice(SMALL_FIRM_WORDS)} {rng.choice(SMALL_FIRM_FIELDS)} Co., Ltd."
        if name in names:
            continue
        names.add(name)
        code = f"SME{len(firms) + 1:04d}"
        firms.append(
            InstitutionSpec(code, name, InstitutionKind.small_company, ("High-tech Zone",))
        )
    return firms


def labs(
    rng: random.Random, institutions: list[InstitutionSpec], hosting_firms: int
) -> list[LabSpec]:
    """Key labs and shared centres of every institution, and a few small-firm labs."""
    specs = [
        LabSpec(code, name, inst, True, 4.0, groups) for code, name, inst, groups in STATE_KEY_LABS
    ]
    themes = [(group, theme) for group, names in THEMES.items() for theme in names]
    for inst in institutions:
        if inst.kind == InstitutionKind.small_company:
            continue
        for n in range(1, inst.key_labs + 1):
            group, theme = rng.choice(themes)
            level = "Shaanxi Key Laboratory" if n % 3 else "MOE Key Laboratory"
            name = f"{level} of {theme}"
            groups = (group, *rng.sample(KIND_GROUPS[inst.kind], 2))
            specs.append(LabSpec(f"{inst.code}-KL{n:02d}", name, inst.code, True, 3.0, groups))
        specs.extend(_centres(rng, inst))
    firms = [i for i in institutions if i.kind == InstitutionKind.small_company]
    for inst in firms[:hosting_firms]:
        groups = tuple(rng.sample(KIND_GROUPS[inst.kind], 2))
        specs.append(LabSpec(f"{inst.code}-LAB", "R&D Testing Lab", inst.code, False, 0.4, groups))
    return specs


def _centres(rng: random.Random, inst: InstitutionSpec) -> list[LabSpec]:
    code, kind = inst.code, inst.kind
    if kind == InstitutionKind.university:
        centres = [
            LabSpec(
                f"{code}-ATC", "Analytical and Testing Center", code, False, 3.0 + inst.key_labs, ()
            ),
        ]
        schools = rng.sample(_SCHOOLS, k=min(len(_SCHOOLS), 2 + inst.key_labs // 2))
        centres += [
            LabSpec(f"{code}-{abbr}", f"Instrument Sharing Platform, {school}", code, False, 3.0, g)
            for abbr, school, g in schools
        ]
        return centres
    if kind == InstitutionKind.institute:
        return [
            LabSpec(f"{code}-PTC", "Public Technology Service Center", code, False, 6.0, ()),
            LabSpec(
                f"{code}-ERC", "Engineering Research Center", code, False, 2.0, ("mat", "elec")
            ),
        ]
    if kind == InstitutionKind.hospital:
        return [
            LabSpec(f"{code}-CL", "Central Laboratory", code, False, 4.0, ("cell", "seq", "ms")),
            LabSpec(f"{code}-CRC", "Clinical Research Center", code, False, 2.0, ("cell", "seq")),
        ]
    if code == "XHTZ":
        return [
            LabSpec(f"{code}-{n}", f"{park} Shared Laboratory", code, False, 3.0, ())
            for n, park in enumerate(_PARKS, start=1)
        ]
    return [LabSpec(f"{code}-TAC", "Testing and Analysis Center", code, False, 3.0, ())]


# (code suffix, school, focus groups)
_SCHOOLS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("CHEM", "School of Chemistry", ("chrom", "spec", "nmr", "ms")),
    ("MSE", "School of Materials Science and Engineering", ("em", "xray", "mat", "thermal")),
    ("LIFE", "School of Life Sciences", ("cell", "seq", "ms")),
    ("PHYS", "School of Physics", ("spec", "elec", "xray")),
    ("ENV", "School of Environmental Science", ("chrom", "ms", "spec")),
    ("EE", "School of Electronic Engineering", ("elec", "em")),
    ("MED", "School of Medicine", ("cell", "seq", "nmr")),
    ("ENE", "School of Energy and Power Engineering", ("thermal", "mat", "spec")),
    ("PHARM", "School of Pharmacy", ("chrom", "ms", "nmr")),
    ("GEO", "School of Earth Sciences", ("xray", "ms", "spec")),
)
_PARKS = (
    "Software New Town",
    "Zhangba Innovation Park",
    "Silk Road Software City",
    "Xixian New Area Hub",
    "Qujiang Startup Park",
)
