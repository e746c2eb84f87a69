"""Every action id, block id and view callback id the bot uses, in one place."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    # quick-path confirmation (ephemeral message) and the modal's confirmation view
    REQUEST_APPROVAL = "request_approval"
    EDIT_DRAFT = "edit_draft"
    DISCARD_DRAFT = "discard_draft"
    # the approval message
    APPROVE = "approve"
    REJECT = "reject"
    CANCEL_REQUEST = "cancel_request"
    # the failure message
    EDIT_AND_RESUBMIT = "edit_and_resubmit"
    # modal inputs (the action ids of their elements)
    ENGINE = "engine"
    SCHEDULE = "schedule"
    RESERVE = "reserve"
    MAX_FILES = "max_files"
    REASON = "reason"
    CHANNEL = "channel"
    # the schedule builder beside the cron input (each change updates the live preview)
    SCHEDULE_MODE = "schedule_mode"
    SCHEDULE_DAYS = "schedule_days"
    SCHEDULE_TIME = "schedule_time"


class Block(StrEnum):
    ENGINE = "engine"
    SCHEDULE = "schedule"
    RESERVE = "reserve"
    MAX_FILES = "max_files"
    REASON = "reason"
    CHANNEL = "channel"
    SCHEDULE_MODE = "schedule_mode"
    SCHEDULE_DAYS = "schedule_days"
    SCHEDULE_TIME = "schedule_time"
    SCHEDULE_PREVIEW = "schedule_preview"
    DECISION_REASON = "decision_reason"
    ACTIONS = "actions"


class Callback(StrEnum):
    FORM = "backup_form"
    CONFIRM = "backup_confirm"
    REJECT = "backup_reject"
    BREAK_GLASS = "backup_break_glass"
    NOTICE = "backup_notice"
    # the global shortcut (manifest.yml)
    SHORTCUT_CREATE = "create_backup_policy"
