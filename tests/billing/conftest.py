"""A small network for billing tests: one provider lab and payers of every class."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlmodel import Session

from core.models import Role, User
from instruments.models import Institution, InstitutionKind, Instrument, Lab
from tests.billing.helpers import create_user
from tests.factories import create_institution, create_instrument, create_lab


@dataclass
class Net:
    provider: Institution
    lab: Lab
    instrument: Instrument
    manager: User
    insider: User  # researcher of the provider institution
    academic: Institution
    researcher: User
    researcher2: User
    academic_admin: User
    company: Institution
    engineer: User
    small: Institution
    founder: User
    admin: User


@pytest.fixture
def net(session: Session) -> Net:
    provider = create_institution(session, code="UNIV-A")
    lab = create_lab(session, institution=provider, code="LAB-A")
    instrument = create_instrument(session, lab=lab, code="MS-1", name="Orbitrap")
    academic = create_institution(session, code="UNIV-B", kind=InstitutionKind.institute)
    company = create_institution(session, code="BIGCO", kind=InstitutionKind.company)
    small = create_institution(
        session, code="TINY", kind=InstitutionKind.small_company, is_small_company=True
    )
    return Net(
        provider=provider,
        lab=lab,
        instrument=instrument,
        manager=create_user(session, role=Role.lab_manager, lab=lab),
        insider=create_user(session, institution=provider),
        academic=academic,
        researcher=create_user(session, institution=academic),
        researcher2=create_user(session, institution=academic),
        academic_admin=create_user(session, role=Role.institution_admin, institution=academic),
        company=company,
        engineer=create_user(session, institution=company),
        small=small,
        founder=create_user(session, institution=small),
        admin=create_user(session, role=Role.network_admin),
    )
