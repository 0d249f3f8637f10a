"""gRPC status helpers: the right code, a message a person can act on, structured details."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.api.earpiece.v1 import session_pb2 as pb
from services.gateway.validation import InvalidField


async def abort_invalid(context: grpc.aio.ServicerContext, exc: InvalidField) -> NoReturn:
    violation = error_details_pb2.BadRequest.FieldViolation(
        field=exc.field, description=exc.problem
    )
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    await abort_with_details(context, code_pb2.INVALID_ARGUMENT, str(exc), [detail])


async def abort_with_details(
    context: grpc.aio.ServicerContext, code: int, message: str, details: Sequence[any_pb2.Any]
) -> NoReturn:
    status = status_pb2.Status(code=code, message=message, details=list(details))
    # grpc-stubs lacks the aio context's abort_with_status, which grpc.aio has.
    await context.abort_with_status(rpc_status.to_status(status))  # type: ignore[attr-defined]
    raise AssertionError("unreachable")  # abort_with_status raises


def finding_details(findings: Sequence[pb.PromptFinding], *, field: str) -> list[any_pb2.Any]:
    """Lint findings as a BadRequest (for generic clients) plus each PromptFinding itself."""
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field=field, description=f"line {f.line}: {f.rule}: {f.why} Rewrite: {f.rewrite}"
            )
            for f in findings
        ]
    )
    out = [any_pb2.Any()]
    out[0].Pack(bad)
    for f in findings:
        packed = any_pb2.Any()
        packed.Pack(f)
        out.append(packed)
    return out
