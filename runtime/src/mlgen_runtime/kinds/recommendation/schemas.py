"""The recommendation API's *schemas*: the request bodies (validated once, from the raw JSON,
by pydantic-core) and the answers (serialised by the routes in these shapes, which document
them at /docs).

An id is what JSON sends: an integer or a string (``"318"`` finds item 318 of integer ids);
anything else, a float or a boolean included, is refused with the field named. Filter values are
strings or integers, kept as text.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StrictBool, StrictInt
from pydantic_core import PydanticCustomError

Strategy = Literal["personalised", "similar_items", "content", "popularity"]
MAX_ID_LENGTH = 256


def _id(value: Any) -> Any:
    if type(value) is int or (type(value) is str and 0 < len(value) <= MAX_ID_LENGTH):
        return value
    raise PydanticCustomError(
        "id_type",
        "an id is a JSON integer or a string of 1 to {limit} characters, not {value}",
        {"limit": MAX_ID_LENGTH, "value": repr(value)[:60]},
    )


def _value(value: Any) -> Any:
    if type(value) in (int, str) and len(str(value)) <= MAX_ID_LENGTH:
        return str(value)
    raise PydanticCustomError(
        "filter_value",
        "a filter value is a string or an integer, not {value}",
        {"value": repr(value)[:60]},
    )


# An id as JSON sends it: the data's ids are numbers or text ("318" finds item 318).
Id = Annotated[int | str, PlainValidator(_id, json_schema_input_type=int | str)]
FilterValues = list[Annotated[str, PlainValidator(_value, json_schema_input_type=int | str)]]


class RecommendRequest(BaseModel):
    """The top ``k`` items for a user."""

    model_config = ConfigDict(extra="forbid")

    user_id: Id = Field(description="The user; one the model never saw gets a cold start.")
    k: StrictInt | None = Field(None, description="How many items (default recommendation.k).")
    exclude_seen: StrictBool = Field(True, description="Leave out items the user already used.")
    filters: dict[str, FilterValues] | None = Field(
        None,
        description="Keep items whose metadata column holds one of the values, e.g. "
        '{"genres": ["Comedy"]} (GET /metadata lists filter_columns).',
    )


class SimilarRequest(BaseModel):
    """Items related to a set of items (a basket, a patch sheet, a new user's few items)."""

    model_config = ConfigDict(extra="forbid")

    items: list[Id] = Field(min_length=1, description="Item ids; the answer never repeats them.")
    k: StrictInt | None = Field(None, description="How many items (default recommendation.k).")
    filters: dict[str, FilterValues] | None = Field(None, description="As for /recommend.")


class RecommendationFeedback(BaseModel):
    """An item the user clicked or used after a recommendation (one per request)."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(
        min_length=1, max_length=128, description="The request_id of the recommendation."
    )
    item_id: Id = Field(description="The item the user clicked or used.")


class RecommendedItem(BaseModel):
    item_id: int | str
    score: float


class Recommendations(BaseModel):
    items: list[RecommendedItem] = Field(description="Best first.")
    strategy: Strategy = Field(
        description="personalised (the model, for a known user), similar_items (the model, "
        "from known items), content (item metadata, for unknown items), popularity (cold "
        "start: nothing known)."
    )
    model_name: str
    model_version: str
    request_id: str


class FeedbackReceipt(BaseModel):
    request_id: str
    item_id: int | str
    model_version: str
    hit: bool = Field(description="Whether the item was among those recommended.")
    rank: int | None = Field(description="Its position in the recommendation (1 = first).")


class RecommenderMetadata(BaseModel):
    model_name: str
    model_version: str
    family: str
    run_id: str | None
    source: str
    serving_path: str
    task: str = "recommendation"
    k: int
    max_k: int
    items: int = Field(description="Items the model can recommend (with training use).")
    users: int = Field(description="Users the model knows (the rest get a cold start).")
    filter_columns: list[str]
    metrics: dict[str, Any]
    primary_metric: str | None
    trained_at: str | None
    drift_signals: list[str]
