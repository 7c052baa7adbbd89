"""Control API of the sandbox: move the clock, read the call log, inject faults, act as a person.

EMULATOR CODE. Plain JSON over HTTP on loopback only; no Microsoft or Atlassian API looks like this. The
demo and end-to-end tests drive the scenario with it (an agent comments, the list blocks a user again
on a later day, the clock jumps four hours).
"""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

from flask import Flask, Response, abort, jsonify, request
from mailunblock.sandbox.core import SERVICES, CallRecord, FaultRule, SandboxContext
from mailunblock.sandbox.scenario import MicrosoftState

LOOPBACK = frozenset({"127.0.0.1", "::1"})
# The marker of mailunblock's plan note and of its successors ("...:plan", "...:plan-2").
DEFAULT_PLAN_MARKER = r":plan(-\d+)?$"


def _record_json(record: CallRecord) -> dict[str, Any]:
    return {
        "service": record.service,
        "method": record.method,
        "path": record.path,
        "query": record.query,
        "status": record.status,
        "body": record.body,
        "at": record.at.isoformat(),
        "headers": record.headers,
        "batched": record.batched,
    }


def _jira_errors() -> tuple[type[Exception], ...]:
    try:
        from mailunblock.sandbox.jira import JiraApiError
    except ImportError:
        return ()
    return (JiraApiError,)


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, "send a JSON object")
    return body


def create_control_app(ctx: SandboxContext, microsoft: MicrosoftState, jira: Any | None) -> Flask:
    """The control app; ``jira`` is the JiraState, or None when the Jira emulator is absent."""
    app = Flask("mailunblock.sandbox.control")
    lookup_errors: tuple[type[Exception], ...] = (KeyError, *_jira_errors())

    @app.before_request
    def _loopback_only() -> None:
        if request.remote_addr not in LOOPBACK:
            abort(403, "the sandbox control API answers loopback clients only")

    @app.after_request
    def _label(response: Response) -> Response:
        response.headers["Server"] = "mailunblock-sandbox/control (EMULATOR)"
        return response

    @app.errorhandler(400)
    @app.errorhandler(403)
    @app.errorhandler(404)
    def _error(error: Any) -> tuple[Response, int]:
        return jsonify({"error": getattr(error, "description", str(error))}), error.code

    def clock_json() -> Response:
        return jsonify({"now": ctx.clock.now().isoformat(), "speed": ctx.clock.speed})

    @app.get("/clock")
    def get_clock() -> Response:
        return clock_json()

    @app.post("/clock/advance")
    def advance_clock() -> Response:
        body = _body()
        ctx.clock.advance(
            timedelta(
                hours=float(body.get("hours", 0)),
                minutes=float(body.get("minutes", 0)),
                seconds=float(body.get("seconds", 0)),
            )
        )
        return clock_json()

    @app.post("/clock/speed")
    def clock_speed() -> Response:
        speed = float(_body().get("speed", 0))
        if speed <= 0:
            abort(400, "speed must be > 0")
        ctx.clock.set_speed(speed)
        return clock_json()

    @app.get("/calls")
    def calls() -> Response:
        service = request.args.get("service") or None
        return jsonify([_record_json(r) for r in ctx.calls.records(service)])

    @app.delete("/calls")
    def clear_calls() -> tuple[str, int]:
        ctx.calls.clear()
        return "", 204

    @app.post("/faults")
    def add_fault() -> tuple[Response, int]:
        body = _body()
        if body.get("service") not in SERVICES:
            abort(400, f"service must be one of {list(SERVICES)}")
        rule = FaultRule(
            service=body["service"],
            status=body.get("status", 503),
            retry_after=body.get("retry_after"),
            count=int(body.get("count", 1)),
            method=body.get("method"),
            path_contains=body.get("path_contains"),
            delay_seconds=float(body.get("delay_seconds", 0.0)),
            probability=float(body.get("probability", 1.0)),
            cmdlet=body.get("cmdlet"),
            label=body.get("label"),
        )
        if not 0.0 <= rule.probability <= 1.0:
            abort(400, "probability must be between 0 and 1")
        ctx.faults.add(rule)
        return jsonify({"queued": body}), 201

    @app.delete("/faults")
    def clear_faults() -> tuple[str, int]:
        ctx.faults.clear()
        return "", 204

    @app.get("/faults/injected")
    def injected_faults() -> Response:
        return jsonify([{"service": service, "kind": kind, "count": count}
                        for (service, kind), count in sorted(ctx.faults.injected.items())])

    @app.get("/inflight")
    def inflight() -> Response:
        now = time.monotonic()
        return jsonify([{"service": r.service, "method": r.method, "path": r.path, "cmdlet": r.cmdlet,
                         "remote_port": r.remote_port, "seconds": round(now - r.started, 3)}
                        for r in ctx.inflight.snapshot()])

    @app.post("/exchange/block")
    def block() -> tuple[Response, int]:
        body = _body()
        try:
            if "reason" in body:
                microsoft.block(body["tenant"], body["address"], str(body["reason"]))
            else:
                microsoft.block(body["tenant"], body["address"])
        except KeyError as exc:
            abort(404, str(exc))
        return jsonify({"listed": True}), 201

    @app.get("/exchange/listed")
    def listed() -> Response:
        tenant, address = request.args.get("tenant", ""), request.args.get("address", "")
        try:
            return jsonify(
                {
                    "listed": microsoft.is_listed(tenant, address),
                    "unblocks": microsoft.unblock_count(tenant, address),
                }
            )
        except KeyError as exc:
            abort(404, str(exc))

    @app.post("/microsoft/<tenant>/users/<user>/password-check")
    def password_check(tenant: str, user: str) -> Response:
        password = _body().get("password")
        if not isinstance(password, str):
            abort(400, "send {\"password\": \"...\"}")
        try:
            return jsonify({"in_effect": microsoft.password_in_effect(tenant, user, password)})
        except KeyError as exc:
            abort(404, str(exc))

    @app.get("/microsoft/<tenant>/users/<user>")
    def user_counters(tenant: str, user: str) -> Response:
        try:
            return jsonify(
                {
                    "password_resets": microsoft.reset_count(tenant, user),
                    "session_revocations": microsoft.revocation_count(tenant, user),
                }
            )
        except KeyError as exc:
            abort(404, str(exc))

    def require_jira() -> Any:
        if jira is None:
            abort(404, "the Jira emulator is not running")
        return jira

    @app.post("/jira/comment")
    def jira_comment() -> tuple[Response, int]:
        body = _body()
        state = require_jira()
        try:
            comment_id = state.add_comment(
                body["key"], body["author"], body["body"], internal=bool(body.get("internal"))
            )
        except lookup_errors as exc:
            abort(404, str(exc))
        return jsonify({"id": comment_id}), 201

    @app.post("/jira/labels")
    def jira_labels() -> Response:
        body = _body()
        state = require_jira()
        try:
            state.set_labels(body["key"], list(body["labels"]), body.get("actor"))
        except lookup_errors as exc:
            abort(404, str(exc))
        return jsonify({"labels": list(body["labels"])})

    @app.post("/jira/auto-approve")
    def auto_approve() -> Response:
        body = _body()
        state = require_jira()
        try:
            answer = state.answer_automatically(
                str(body.get("agent", "alice")), str(body.get("marker", DEFAULT_PLAN_MARKER)),
                property_key=str(body.get("property", "mailunblock")), body=str(body.get("body", "/approve")))
        except lookup_errors as exc:
            abort(404, str(exc))
        except re.error as exc:
            abort(400, f"marker is not a regular expression: {exc}")
        return jsonify({"agent": answer.author, "marker": answer.marker.pattern})

    @app.delete("/jira/auto-approve")
    def stop_auto_approve() -> tuple[str, int]:
        require_jira().auto_answer = None
        return "", 204

    return app
