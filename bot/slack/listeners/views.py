"""Modal submissions: the form, its confirmation, the reject and break-glass reasons.

Whatever can fail in a way the person must see in the modal (bad values, the store down, a
refusal) happens in the ack function, so the error handler can still answer in the modal itself;
what follows the answer (posting the approval message, the decision itself) is a lazy function
(bot.slack.followups).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.approval import decide_create
from bot.core.requests import BackupRequest
from bot.flow import PostFailed
from bot.slack.errors import FieldErrors, guarded
from bot.slack.followups import acknowledge, hand_off, handed, later, only_if_handed
from bot.slack.form import MAX_REASON, validate
from bot.slack.ids import Block, Callback
from bot.slack.publisher import api_error
from bot.slack.services import Services
from bot.slack.views import ViewMeta, confirm_view, form_state, notice_view, submitted_values

log = logging.getLogger("bot.slack.views")


def _check_length(reason: str) -> None:
    """The form's input stops at MAX_REASON characters; a client that ignores it is told so."""
    if len(reason) > MAX_REASON:
        raise FieldErrors(
            {Block.DECISION_REASON.value: f"Keep the reason under {MAX_REASON} characters."}
        )


def register(app: AsyncApp, services: Services) -> None:
    @app.view(Callback.FORM)
    @guarded
    async def on_form(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        user = str(body["user"]["id"])
        meta = ViewMeta.load(view.get("private_metadata"))
        state = form_state(view)
        now = services.clock()
        result = await validate(
            state.given,
            catalog=services.catalog,
            zone=services.settings.zone,
            now=now,
            require_reason=services.settings.require_reason,
        )
        errors = {Block(f.value).value: e for f, e in result.errors.items()}
        channel = meta.channel or state.channel
        if not meta.channel:  # opened from the shortcut: the channel was chosen in the form
            if not channel:
                errors[Block.CHANNEL.value] = "Choose the channel for the approval message."
            else:
                groups = await services.flow.groups_of(user)
                decision = decide_create(services.flow.policy, user, groups, channel)
                if not decision.allowed:
                    errors[Block.CHANNEL.value] = decision.message
        if errors or result.values is None or not channel:
            raise FieldErrors(errors)
        form = result.values
        draft = form.draft(user=user, channel=channel, now=now)
        carried = ViewMeta(draft=draft.id, form=draft)
        if not carried.fits():  # too long for the view: kept in the store instead
            await services.flow.save_draft(draft)
            carried = ViewMeta(draft=draft.id)
        zone = await services.directory.user_zone(user)
        confirm = confirm_view(draft, form.preview, zone, built=form.built, meta=carried)
        await _over_a_newer_preview(client, services, view, confirm)
        await ack(response_action="update", view=confirm)

    @guarded
    async def confirm(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        user = str(body["user"]["id"])
        meta = ViewMeta.load(view.get("private_metadata"))
        draft = await services.flow.carried_or_stored(meta.form, meta.draft or "")
        request = await services.flow.submit(draft, user)
        where = services.settings.approval_channel or request.channel
        hand_off(context, request=request.model_dump(mode="json"))
        await ack(
            response_action="update",
            view=notice_view(
                "Sent for approval",
                f"Request `{request.id}` is waiting for a second engineer's approval in "
                f"<#{where}>. Nothing is sent to CSE before that.",
            ),
        )

    @only_if_handed("request")
    async def announce(
        view: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        request = BackupRequest.model_validate(handed(context)["request"])
        try:
            await services.flow.announce(request)
        except PostFailed as exc:
            # The modal still shows "Sent for approval": say what happened there instead.
            await client.views_update(
                view_id=view["id"],
                view=notice_view("Not sent", f"{exc}\nRequest `{request.id}` was withdrawn."),
            )

    app.view(Callback.CONFIRM)(ack=confirm, lazy=[later(announce)])

    def _decision(body: dict[str, Any], view: dict[str, Any]) -> tuple[str, str, str]:
        """(who, which request, the reason given)."""
        meta = ViewMeta.load(view.get("private_metadata"))
        reason = (submitted_values(view).get(Block.DECISION_REASON) or "").strip()
        return str(body["user"]["id"]), meta.request or "", reason

    @guarded
    async def check_reject(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        user, request_id, reason = _decision(body, view)
        if services.settings.require_reason and not reason:
            raise FieldErrors({Block.DECISION_REASON.value: "Say why you reject it."})
        _check_length(reason)
        await services.flow.check_reject(request_id, user)
        await ack(response_action="clear")

    async def reject(body: dict[str, Any], view: dict[str, Any]) -> None:
        user, request_id, reason = _decision(body, view)
        await services.flow.reject(request_id, user, reason)

    app.view(Callback.REJECT)(ack=check_reject, lazy=[later(reject)])

    @guarded
    async def check_break_glass(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        _, _, reason = _decision(body, view)
        if not reason:
            raise FieldErrors(
                {Block.DECISION_REASON.value: "A break-glass approval needs a reason."}
            )
        _check_length(reason)
        await ack(response_action="clear")

    async def break_glass(body: dict[str, Any], view: dict[str, Any]) -> None:
        user, request_id, reason = _decision(body, view)
        await services.flow.approve(request_id, user, reason)

    app.view(Callback.BREAK_GLASS)(ack=check_break_glass, lazy=[later(break_glass)])

    app.view(Callback.NOTICE)(acknowledge)


async def _over_a_newer_preview(
    client: AsyncWebClient, services: Services, view: dict[str, Any], confirm: dict[str, Any]
) -> None:
    """When a live-preview update landed after the version that was submitted, the answer to
    the submission might be dropped in favour of that preview: put the confirmation over the
    preview first (with the preview's hash, so nothing newer is overwritten)."""
    view_id = str(view.get("id") or "")
    newer = await services.previews.newer_than(view_id, view.get("hash")) if view_id else None
    if newer is None:
        return
    try:
        await client.views_update(view_id=view_id, hash=newer, view=confirm)
    except SlackApiError as exc:
        log.info("confirmation not put over the preview (%s)", api_error(exc))
