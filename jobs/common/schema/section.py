"""The base of every section of an experiment or sweep file."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # Unknown keys are errors (with a close-match suggestion), never ignored; a field with an alias
    # (a legacy key) may be given by its own name too.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
