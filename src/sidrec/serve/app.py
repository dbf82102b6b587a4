"""The HTTP service: FastAPI around one :class:`~sidrec.api.Recommender`.

    POST /recommend   {"history": [...]} or {"histories": [[...], ...]}, "k", "exclude_seen"
    POST /items       {"items": [{"item_id": ..., <the run's text fields>}]}   (cold start)
    GET  /items/{id}  an item's SID and text
    GET  /health      status, method, item counts
    GET  /docs, /openapi.json

Every client mistake is a 4xx whose ``detail`` names the problem (422: the request's
shape, 400: an unknown id, an empty history, a bad ``k``; 404: an unknown item); an
unexpected failure is a 500 for that request only, never the end of the server.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from sidrec import __version__
from sidrec.api import Recommender
from sidrec.errors import SidrecError
from sidrec.serve.batching import MicroBatcher

ItemId = Annotated[str, Field(min_length=1, max_length=512)]


@dataclass(frozen=True)
class ServeSettings:
    """Service limits and micro-batching (``sidrec serve`` options)."""

    max_batch: int = 32  # histories decoded together at most
    max_wait_ms: float = 5.0  # how long a request waits for others to batch with
    max_k: int = 100  # largest k a client may ask for (k beams are decoded)
    max_histories: int = 256  # histories per request
    max_new_items: int = 1000  # items per POST /items


class RecommendRequest(BaseModel):
    """One history (``history``) or a batch (``histories``) of item ids, oldest first."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"oneOf": [{"required": ["history"]}, {"required": ["histories"]}]}
    )
    history: list[ItemId] | SkipJsonSchema[None] = Field(default=None, description="one history of item ids, oldest first")
    histories: list[list[ItemId]] | SkipJsonSchema[None] = Field(default=None, description="several histories (one list of item ids each)")
    k: int = Field(default=10, description="items per history")
    exclude_seen: bool = Field(default=False, description="drop each history's own items")

    @model_validator(mode="before")
    @classmethod
    def _one_of(cls, data: Any) -> Any:
        if isinstance(data, dict) and sum(data.get(f) is not None for f in ("history", "histories")) != 1:
            raise ValueError("give exactly one of 'history' (a list of item ids) or 'histories' (a list of such lists)")
        if isinstance(data, dict) and any(f in data and data[f] is None for f in ("history", "histories")):
            raise ValueError("'history' / 'histories' must be lists of item ids, not null")
        return data


class Scored(BaseModel):
    item_id: str
    score: float


class RecommendResponse(BaseModel):
    """One ranked list per history, in request order."""

    recommendations: list[list[Scored]]


class NewItem(BaseModel):
    """A cold-start item: its id and some of the text fields the run was embedded with."""

    model_config = ConfigDict(extra="allow")
    item_id: ItemId


class ItemsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[NewItem] = Field(min_length=1)


class ItemsResponse(BaseModel):
    added: list[str]
    sids: list[list[int]]
    unreachable: list[str] = Field(description="added, but the model cannot generate their SID (a full collision group)")


class ErrorResponse(BaseModel):
    detail: str = Field(description="what is wrong with the request")


BAD = {400: {"model": ErrorResponse, "description": "an unknown item id, an empty history, a bad k or item"}}


class ItemResponse(BaseModel):
    item_id: str
    sid: list[int] | None
    added: bool
    recommendable: bool
    fields: dict[str, Any]


def create_app(rec: Recommender, settings: ServeSettings = ServeSettings()) -> FastAPI:
    """The FastAPI app serving ``rec`` (the micro-batcher starts with the app and stops with it)."""
    state: dict[str, MicroBatcher] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        state["batcher"] = MicroBatcher(rec, settings.max_batch, settings.max_wait_ms)
        try:
            yield
        finally:
            state.pop("batcher").close()

    app = FastAPI(title="sidrec", version=__version__, lifespan=lifespan,
                  description="Generative recommendation with semantic IDs: item ids in, item ids out.")  # fmt: skip

    @app.exception_handler(SidrecError)
    async def _bad_input(request: Request, exc: SidrecError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=500, content={"detail": f"internal error: {type(exc).__name__}: {exc}"})

    @app.post("/recommend", response_model=RecommendResponse, responses=BAD)
    async def recommend(req: RecommendRequest) -> RecommendResponse:
        histories = [req.history] if req.history is not None else req.histories or []
        if not histories:
            raise SidrecError("'histories' is empty: give at least one history")
        if len(histories) > settings.max_histories:
            raise SidrecError(f"at most {settings.max_histories} histories per request, got {len(histories)}")
        limit = min(settings.max_k, rec.n_items)
        if not 1 <= req.k <= limit:
            raise SidrecError(f"k must be between 1 and {limit}, got {req.k}")
        idx = []
        for n, h in enumerate(histories):
            try:
                idx.append(rec.item_indices(h))
            except SidrecError as e:
                raise SidrecError(f"history {n}: {e}" if req.histories is not None else str(e)) from None
        rows = await asyncio.wrap_future(state["batcher"].submit(idx, req.k, req.exclude_seen))
        return RecommendResponse(recommendations=[[Scored(item_id=r.item_id, score=r.score) for r in row] for row in rows])

    @app.post("/items", response_model=ItemsResponse, responses=BAD)
    def add_items(req: ItemsRequest) -> ItemsResponse:  # sync: runs in the threadpool (it embeds text)
        if len(req.items) > settings.max_new_items:
            raise SidrecError(f"at most {settings.max_new_items} items per request, got {len(req.items)}")
        res = rec.add_items([it.model_dump() for it in req.items])
        return ItemsResponse(added=res.item_ids, sids=res.sids, unreachable=res.unreachable)

    @app.get("/items/{item_id}", response_model=ItemResponse, responses={404: {"model": ErrorResponse, "description": "unknown item id"}})
    def get_item(item_id: str) -> ItemResponse:
        if item_id not in rec:
            raise HTTPException(status_code=404, detail=f"unknown item id {item_id!r}")
        return ItemResponse(**rec.item(item_id))

    @app.get("/health")
    def health() -> dict[str, Any]:
        b = state.get("batcher")
        return {"status": "ok", "method": rec.method, "items": rec.n_items, "beam_size": rec.cfg.eval.beam_size,
                "batches": b.batches if b else 0}  # fmt: skip

    return app
