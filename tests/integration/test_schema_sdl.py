"""The checked-in SDL is what frontends run codegen on: it must match the models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from statesync.api.schema import build_schema
from statesync.models import ModelSpec

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_sdl_matches_the_models(demo_models: list[ModelSpec]) -> None:
    checked_in = (ROOT / "schema" / "schema.graphql").read_text()
    generated = build_schema(demo_models).as_str()
    assert checked_in.strip() == generated.strip(), (
        "schema/schema.graphql is stale: run `statesync schema print > schema/schema.graphql`"
    )


def test_cli_prints_the_same_sdl(demo_models: list[ModelSpec]) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "statesync", "schema", "print", "--schema", str(ROOT / "schema")],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout
    assert printed.strip() == build_schema(demo_models).as_str().strip()


def test_generated_api_has_the_documented_shape(demo_models: list[ModelSpec]) -> None:
    sdl = build_schema(demo_models).as_str()
    for line in (
        "order(id: ID!): Order",
        "orders(where: OrderWhere, orderBy: [OrderOrder!], first: Int, after: String): OrderConnection!",
        "createOrder(input: OrderInput!, id: ID, mutationId: ID): OrderCommit!",
        "updateOrder(id: ID!, patch: OrderPatch!, expectedVersion: Int, mutationId: ID): OrderCommit!",
        "deleteOrder(id: ID!, expectedVersion: Int, mutationId: ID): OrderCommit!",
        "order(id: ID!, since: String): OrderChange!",
        "orders(where: OrderWhere, since: String): OrderChange!",
    ):
        assert line in sdl, line
    # A field clients may not write is readable but absent from both inputs.
    order_input = sdl.split("input OrderInput {")[1].split("}")[0]
    order_patch = sdl.split("input OrderPatch {")[1].split("}")[0]
    assert "totalCents" not in order_input and "totalCents" not in order_patch
    assert "totalCents: Int" in sdl.split("type Order {")[1].split("}")[0]
