"""The baseline the booking and catalog benchmarks measure labshare against.

A minimal FastAPI app over the same database, served the same way: it parses the same
booking JSON, decodes the same JWT, and does one INSERT into the same constrained
`booking` table (the exclusion constraint's refusal is its 409); and it runs the catalog
search's own SQL for one page. What labshare does beyond that (rules, conflicts and
alternatives, revocable sessions, the unit of work) is what the ratio prices.

    uvicorn baseline_app:app --workers 2   (from bench/, with BASELINE_DATABASE_URL)
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Annotated, Any

import jwt
from fastapi import FastAPI, Header, HTTPException, Query
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

ENGINE = create_engine(
    os.environ["BASELINE_DATABASE_URL"], pool_size=20, max_overflow=10, pool_recycle=1800
)
SECRET = os.environ["BASELINE_SECRET"]
INSERT = text(
    "INSERT INTO booking (instrument_id, user_id, start_at, end_at, status, purpose, version,"
    " created_at, updated_at) VALUES (:i, :u, :s, :e, 'confirmed', :p, 1, now(), now())"
    " RETURNING id"
)
app = FastAPI()


class BookingIn(BaseModel):
    instrument_id: int = Field(ge=1, le=2**31 - 1)
    start: AwareDatetime
    end: AwareDatetime
    purpose: str = Field(default="", max_length=1000)


def _user(authorization: str | None) -> int:
    _scheme, _, token = (authorization or "").partition(" ")
    try:
        claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"require": ["exp"]})
        return int(claims["sub"])
    except (jwt.PyJWTError, KeyError, ValueError):
        raise HTTPException(401, "not signed in")


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/api/v1/bookings", status_code=201)
def book(data: BookingIn, authorization: Annotated[str | None, Header()] = None) -> Any:
    user_id = _user(authorization)
    try:
        with ENGINE.begin() as conn:
            booking_id = conn.execute(
                INSERT,
                {"i": data.instrument_id, "u": user_id, "s": data.start, "e": data.end,
                 "p": data.purpose},
            ).scalar_one()  # fmt: skip
    except IntegrityError:
        raise HTTPException(409, "the time is not free")
    return {"id": booking_id, "status": "confirmed", "created_at": datetime.now(UTC)}


@app.get("/api/v1/instruments")
def search(
    q: Annotated[str, Query(max_length=200)] = "",
    category: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Any:
    """The statements labshare's catalog search runs for one page, run here directly (the
    benchmark reads them from labshare's own statement log and passes them in the same
    order: see bench/catalog.py)."""
    with ENGINE.connect() as conn:
        rows = conn.execute(
            SEARCH_SQL, {"q": f"%{q.lower()}%", "category": category, "limit": limit}
        ).all()
    return {"items": [dict(r._mapping) for r in rows], "next": None}


# One page of the catalog, as labshare's search filters and orders it, in one statement.
SEARCH_SQL = text(
    """
    SELECT i.id, i.code, i.name, c.code AS category, l.code AS lab, s.code AS institution,
           i.status, i.manufacturer, i.model, i.location
    FROM instrument i
    JOIN category c ON c.id = i.category_id
    JOIN lab l ON l.id = i.lab_id
    JOIN institution s ON s.id = l.institution_id
    WHERE (lower(i.name) LIKE :q OR lower(i.code) LIKE :q)
      AND (CAST(:category AS TEXT) IS NULL OR c.code = :category
           OR c.parent_id = (SELECT id FROM category WHERE code = :category))
    ORDER BY i.id
    LIMIT :limit
    """
)
