"""Request and response shapes of the kernel: sign-in and accounts."""

from __future__ import annotations

from pydantic import BaseModel, Field

from core.models import Role


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"


class UserPublic(BaseModel):
    id: int
    email: str
    name: str
    role: Role
    institution_id: int | None
    lab_id: int | None


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=500)
    new_password: str = Field(
        min_length=1, max_length=500, description="at least 10 characters, not a common one"
    )
