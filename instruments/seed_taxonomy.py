"""The demo network's category taxonomy: groups, leaves, and the instruments found in each.

Each leaf names the kind of instrument, how it is usually priced and booked, how common
it is, and real makes and models with a typical purchase value in units of 10,000 CNY (万元).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Model:
    manufacturer: str
    model: str
    value_wan: int  # typical purchase value, 10,000 CNY


@dataclass(frozen=True)
class Leaf:
    code: str
    name: str
    name_zh: str
    kind: str  # the noun that ends an instrument's name
    rate: int  # academic rate in CNY per unit
    profile: str  # booking-rule profile, see seed.PROFILES
    frequency: int  # how common, relative to other leaves
    models: tuple[Model, ...]
    unit: str = "hour"


@dataclass(frozen=True)
class Group:
    code: str
    name: str
    name_zh: str
    leaves: tuple[Leaf, ...] = field(default_factory=tuple)


def _m(*specs: tuple[str, str, int]) -> tuple[Model, ...]:
    return tuple(Model(*spec) for spec in specs)


# fmt: off
TAXONOMY: tuple[Group, ...] = (
    Group("ms", "Mass spectrometry", "质谱", (
        Leaf("ms-lcms", "LC-MS", "液相色谱-质谱联用仪", "LC-MS system", 400, "expert", 8, _m(
            ("Thermo Fisher Scientific", "Orbitrap Exploris 480", 450),
            ("Agilent", "6546 LC/Q-TOF", 300),
            ("Waters", "Xevo TQ-XS", 280),
            ("SCIEX", "Triple Quad 7500", 320),
            ("Shimadzu", "LCMS-8060NX", 230),
        )),
        Leaf("ms-gcms", "GC-MS", "气相色谱-质谱联用仪", "GC-MS", 200, "self", 9, _m(
            ("Agilent", "8890/5977C", 90),
            ("Thermo Fisher Scientific", "ISQ 7610", 85),
            ("Shimadzu", "GCMS-QP2020 NX", 80),
            ("PerkinElmer", "Clarus SQ 8", 70),
        )),
        Leaf("ms-icpms", "ICP-MS", "电感耦合等离子体质谱仪", "ICP-MS", 300, "service", 5, _m(
            ("Agilent", "7900", 180),
            ("Thermo Fisher Scientific", "iCAP RQ", 170),
            ("PerkinElmer", "NexION 2000", 175),
        ), unit="sample"),
        Leaf("ms-maldi", "MALDI-TOF MS", "基质辅助激光解吸电离飞行时间质谱仪", "MALDI-TOF mass spectrometer", 350, "expert", 2, _m(
            ("Bruker", "autoflex maX", 300),
            ("Bruker", "rapifleX", 450),
            ("Shimadzu", "MALDI-8020", 150),
        )),
        Leaf("ms-irms", "Isotope ratio MS", "同位素比质谱仪", "isotope ratio mass spectrometer", 250, "service", 1, _m(
            ("Thermo Fisher Scientific", "Delta V Plus", 260),
            ("Elementar", "isoprime precisION", 240),
        ), unit="sample"),
    )),
    Group("em", "Electron microscopy", "电子显微镜", (
        Leaf("em-sem", "Scanning electron microscopy", "扫描电子显微镜", "field-emission SEM", 400, "expert", 9, _m(
            ("ZEISS", "GeminiSEM 500", 450),
            ("Thermo Fisher Scientific", "Apreo 2", 400),
            ("Hitachi", "SU8600", 380),
            ("JEOL", "JSM-IT800", 360),
            ("TESCAN", "MIRA", 300),
        )),
        Leaf("em-tem", "Transmission electron microscopy", "透射电子显微镜", "TEM", 800, "expert", 4, _m(
            ("JEOL", "JEM-F200", 1200),
            ("Thermo Fisher Scientific", "Talos F200X", 1500),
            ("Hitachi", "HT7800", 450),
        )),
        Leaf("em-cryo", "Cryo-electron microscopy", "冷冻电子显微镜", "cryo-EM", 1500, "flagship", 1, _m(
            ("Thermo Fisher Scientific", "Titan Krios G4", 4500),
            ("Thermo Fisher Scientific", "Glacios 2", 1800),
            ("JEOL", "CRYO ARM 300 II", 4000),
        )),
        Leaf("em-fib", "FIB-SEM", "聚焦离子束扫描电镜", "dual-beam FIB-SEM", 1000, "flagship", 2, _m(
            ("Thermo Fisher Scientific", "Helios 5 UX", 1300),
            ("ZEISS", "Crossbeam 550", 1100),
            ("TESCAN", "AMBER X", 900),
        )),
        Leaf("em-afm", "Atomic force microscopy", "原子力显微镜", "atomic force microscope", 300, "expert", 5, _m(
            ("Bruker", "Dimension Icon", 230),
            ("Oxford Instruments Asylum Research", "Cypher ES", 280),
            ("Park Systems", "NX20", 200),
        )),
    )),
    Group("nmr", "Magnetic resonance", "磁共振", (
        Leaf("nmr-solution", "Solution NMR", "液体核磁共振波谱仪", "NMR spectrometer", 300, "nmr", 5, _m(
            ("Bruker", "AVANCE NEO 600", 900),
            ("Bruker", "AVANCE NEO 400", 350),
            ("JEOL", "JNM-ECZ500R", 450),
        )),
        Leaf("nmr-solid", "Solid-state NMR", "固体核磁共振波谱仪", "solid-state NMR spectrometer", 500, "flagship", 1, _m(
            ("Bruker", "AVANCE NEO 600 WB", 1200),
            ("Bruker", "AVANCE III HD 400 WB", 600),
        )),
        Leaf("nmr-epr", "EPR", "电子顺磁共振波谱仪", "EPR spectrometer", 400, "expert", 2, _m(
            ("Bruker", "EMXplus", 350),
            ("Bruker", "ELEXSYS E580", 900),
            ("JEOL", "JES-X320", 300),
        )),
        Leaf("nmr-mri", "Small-animal MRI", "小动物磁共振成像仪", "small-animal MRI", 1200, "flagship", 1, _m(
            ("Bruker", "BioSpec 94/30", 2200),
            ("MR Solutions", "DryMag 7T", 1500),
        )),
    )),
    Group("xray", "X-ray analysis", "X射线分析", (
        Leaf("xray-xrd", "Powder X-ray diffraction", "粉末X射线衍射仪", "X-ray diffractometer", 150, "self", 9, _m(
            ("Bruker", "D8 ADVANCE", 180),
            ("Rigaku", "SmartLab", 240),
            ("Malvern Panalytical", "Empyrean", 220),
            ("Shimadzu", "XRD-7000", 90),
            ("Dandong Haoyuan", "DX-2700BH", 45),
        )),
        Leaf("xray-scxrd", "Single-crystal X-ray diffraction", "单晶X射线衍射仪", "single-crystal diffractometer", 300, "expert", 3, _m(
            ("Bruker", "D8 VENTURE", 350),
            ("Rigaku", "XtaLAB Synergy-S", 380),
        )),
        Leaf("xray-xps", "X-ray photoelectron spectroscopy", "X射线光电子能谱仪", "XPS", 600, "expert", 4, _m(
            ("Thermo Fisher Scientific", "ESCALAB Xi+", 550),
            ("Thermo Fisher Scientific", "K-Alpha", 380),
            ("Kratos", "AXIS SUPRA+", 600),
        )),
        Leaf("xray-xrf", "X-ray fluorescence", "X射线荧光光谱仪", "XRF spectrometer", 120, "service", 4, _m(
            ("Bruker", "S8 TIGER", 160),
            ("Rigaku", "ZSX Primus IV", 170),
            ("Skyray Instrument", "EDX 3600H", 25),
        ), unit="sample"),
        Leaf("xray-ct", "X-ray micro-CT", "X射线显微CT", "X-ray micro-CT", 500, "expert", 3, _m(
            ("ZEISS", "Xradia 620 Versa", 900),
            ("Bruker", "SKYSCAN 1272", 260),
            ("Sanying Precision", "nanoVoxel 4000", 400),
        )),
    )),
    Group("chrom", "Chromatography", "色谱", (
        Leaf("chrom-hplc", "HPLC", "高效液相色谱仪", "HPLC", 100, "self", 14, _m(
            ("Agilent", "1260 Infinity II", 35),
            ("Waters", "ACQUITY Arc", 45),
            ("Shimadzu", "LC-20AD", 30),
            ("Thermo Fisher Scientific", "Vanquish Core", 50),
            ("Hanbon", "NP7000", 12),
        )),
        Leaf("chrom-uhplc", "UHPLC", "超高效液相色谱仪", "UHPLC", 150, "self", 6, _m(
            ("Waters", "ACQUITY UPLC H-Class PLUS", 70),
            ("Agilent", "1290 Infinity II", 80),
            ("Thermo Fisher Scientific", "Vanquish Horizon", 85),
        )),
        Leaf("chrom-gc", "Gas chromatography", "气相色谱仪", "gas chromatograph", 100, "self", 9, _m(
            ("Agilent", "8890 GC", 35),
            ("Shimadzu", "GC-2030", 32),
            ("Thermo Fisher Scientific", "TRACE 1600", 30),
            ("Fuli Instruments", "GC9790 Plus", 8),
        )),
        Leaf("chrom-ic", "Ion chromatography", "离子色谱仪", "ion chromatograph", 80, "service", 4, _m(
            ("Thermo Fisher Scientific", "Dionex ICS-6000", 60),
            ("Metrohm", "930 Compact IC Flex", 40),
            ("Qingdao Shenghan", "CIC-D160", 15),
        ), unit="sample"),
    )),
    Group("spec", "Spectroscopy", "光谱", (
        Leaf("spec-ftir", "FTIR spectroscopy", "傅里叶变换红外光谱仪", "FTIR spectrometer", 100, "self", 10, _m(
            ("Thermo Fisher Scientific", "Nicolet iS50", 70),
            ("Bruker", "INVENIO R", 80),
            ("PerkinElmer", "Spectrum 3", 60),
            ("Shimadzu", "IRTracer-100", 50),
        )),
        Leaf("spec-raman", "Raman spectroscopy", "显微共聚焦拉曼光谱仪", "confocal Raman microscope", 200, "self", 6, _m(
            ("HORIBA", "LabRAM HR Evolution", 200),
            ("Renishaw", "inVia Qontor", 220),
            ("WITec", "alpha300 R", 260),
        )),
        Leaf("spec-uvvis", "UV-Vis-NIR spectrophotometry", "紫外-可见-近红外分光光度计", "UV-Vis-NIR spectrophotometer", 60, "self", 12, _m(
            ("Agilent", "Cary 7000", 90),
            ("PerkinElmer", "LAMBDA 1050+", 85),
            ("Shimadzu", "UV-3600i Plus", 60),
            ("Persee", "TU-1901", 6),
        )),
        Leaf("spec-fluor", "Fluorescence spectroscopy", "荧光光谱仪", "fluorescence spectrometer", 120, "self", 6, _m(
            ("Edinburgh Instruments", "FLS1000", 180),
            ("HORIBA", "Fluorolog-QM", 160),
            ("Hitachi", "F-7100", 35),
        )),
        Leaf("spec-icpoes", "ICP-OES", "电感耦合等离子体发射光谱仪", "ICP-OES", 150, "service", 6, _m(
            ("Agilent", "5800 ICP-OES", 80),
            ("Thermo Fisher Scientific", "iCAP PRO", 85),
            ("PerkinElmer", "Avio 550 Max", 80),
        ), unit="sample"),
        Leaf("spec-aas", "Atomic absorption", "原子吸收光谱仪", "atomic absorption spectrometer", 60, "service", 5, _m(
            ("Agilent", "240FS AA", 30),
            ("PerkinElmer", "PinAAcle 900T", 45),
            ("Persee", "TAS-990", 12),
        ), unit="sample"),
    )),
    Group("thermal", "Thermal analysis", "热分析", (
        Leaf("thermal-tga", "Thermogravimetry", "热重分析仪", "thermogravimetric analyser", 100, "self", 8, _m(
            ("TA Instruments", "TGA 5500", 60),
            ("NETZSCH", "TG 209 F1 Libra", 55),
            ("Mettler Toledo", "TGA/DSC 3+", 65),
        )),
        Leaf("thermal-dsc", "Differential scanning calorimetry", "差示扫描量热仪", "DSC", 100, "self", 8, _m(
            ("TA Instruments", "DSC 2500", 60),
            ("NETZSCH", "DSC 214 Polyma", 45),
            ("Mettler Toledo", "DSC 3", 50),
        )),
        Leaf("thermal-dma", "Dynamic mechanical analysis", "动态热机械分析仪", "DMA", 150, "self", 3, _m(
            ("TA Instruments", "DMA 850", 70),
            ("NETZSCH", "DMA 242 E Artemis", 65),
        )),
    )),
    Group("cell", "Cell analysis and imaging", "细胞分析与成像", (
        Leaf("cell-flow", "Flow cytometry", "流式细胞仪", "flow cytometer", 200, "expert", 7, _m(
            ("BD Biosciences", "FACSCanto II", 150),
            ("BD Biosciences", "FACSAria III", 450),
            ("Beckman Coulter", "CytoFLEX S", 120),
            ("Cytek", "Aurora", 350),
        )),
        Leaf("cell-confocal", "Confocal microscopy", "激光扫描共聚焦显微镜", "confocal microscope", 250, "expert", 8, _m(
            ("ZEISS", "LSM 980", 450),
            ("Leica", "STELLARIS 8", 500),
            ("Olympus", "FV3000", 350),
            ("Nikon", "AX R", 400),
        )),
        Leaf("cell-hcs", "High-content imaging", "高内涵成像分析系统", "high-content imaging system", 400, "expert", 2, _m(
            ("Revvity", "Opera Phenix Plus", 600),
            ("Molecular Devices", "ImageXpress Micro Confocal", 450),
        )),
        Leaf("cell-live", "Live-cell imaging", "活细胞成像系统", "live-cell imaging system", 150, "self", 3, _m(
            ("Sartorius", "Incucyte SX5", 180),
            ("ZEISS", "Celldiscoverer 7", 350),
        )),
    )),
    Group("seq", "Sequencing and genomics", "测序与基因组学", (
        Leaf("seq-ngs", "Next-generation sequencing", "高通量测序仪", "sequencer", 3000, "service", 2, _m(
            ("Illumina", "NovaSeq 6000", 800),
            ("Illumina", "NextSeq 2000", 250),
            ("MGI Tech", "DNBSEQ-T7", 600),
            ("MGI Tech", "DNBSEQ-G400", 260),
        ), unit="sample"),
        Leaf("seq-long", "Long-read sequencing", "三代测序仪", "long-read sequencer", 5000, "flagship", 1, _m(
            ("PacBio", "Sequel IIe", 550),
            ("Oxford Nanopore", "PromethION 24", 200),
        ), unit="sample"),
        Leaf("seq-qpcr", "Real-time PCR", "实时荧光定量PCR仪", "real-time PCR system", 60, "self", 9, _m(
            ("Bio-Rad", "CFX Opus 96", 35),
            ("Thermo Fisher Scientific", "QuantStudio 5", 35),
            ("Roche", "LightCycler 480 II", 45),
            ("Bioer", "LineGene 9600 Plus", 12),
        )),
        Leaf("seq-sanger", "Capillary sequencing", "毛细管电泳测序仪", "capillary sequencer", 40, "service", 2, _m(
            ("Thermo Fisher Scientific", "3730xl", 300),
            ("Thermo Fisher Scientific", "SeqStudio Flex", 120),
        ), unit="sample"),
    )),
    Group("mat", "Materials testing", "材料测试", (
        Leaf("mat-ut", "Universal testing", "万能材料试验机", "universal testing machine", 100, "self", 9, _m(
            ("Instron", "5967", 60),
            ("ZwickRoell", "Z100", 70),
            ("MTS", "Criterion C45", 55),
            ("SUNS", "UTM5105", 18),
        )),
        Leaf("mat-bet", "Surface area and porosimetry", "比表面积及孔隙度分析仪", "surface area analyser", 150, "service", 6, _m(
            ("Micromeritics", "ASAP 2460", 60),
            ("Anton Paar", "Autosorb-iQ", 65),
            ("JWGB", "BK200C", 15),
        ), unit="sample"),
        Leaf("mat-psa", "Particle size analysis", "激光粒度分析仪", "particle size analyser", 80, "self", 5, _m(
            ("Malvern Panalytical", "Mastersizer 3000", 60),
            ("HORIBA", "LA-960V2", 55),
            ("Bettersize", "Bettersize2600", 20),
            ("Malvern Panalytical", "Zetasizer Ultra", 70),
        )),
    )),
    Group("elec", "Electronics and photonics", "电子与光电测试", (
        Leaf("elec-probe", "Semiconductor characterisation", "半导体参数分析仪", "semiconductor analyser probe station", 200, "expert", 4, _m(
            ("Keysight", "B1500A", 120),
            ("FormFactor", "Summit 12000", 200),
        )),
        Leaf("elec-vna", "Vector network analysis", "矢量网络分析仪", "vector network analyser", 200, "self", 4, _m(
            ("Keysight", "PNA-X N5247B", 300),
            ("Rohde & Schwarz", "ZNA67", 320),
            ("Ceyear", "3672E", 150),
        )),
        Leaf("elec-laser", "Ultrafast lasers", "飞秒激光系统", "femtosecond laser system", 600, "flagship", 2, _m(
            ("Coherent", "Astrella", 400),
            ("Spectra-Physics", "Solstice Ace", 380),
            ("Light Conversion", "PHAROS", 350),
        )),
    )),
)
# fmt: on

LEAVES: tuple[Leaf, ...] = tuple(leaf for group in TAXONOMY for leaf in group.leaves)
