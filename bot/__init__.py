"""cse-backup-bot: Huawei Cloud CSE backup policies from Slack, with two-person approval."""

__version__ = "0.1.0"
