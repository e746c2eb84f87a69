"""The Slack surface: listeners (one module per interaction kind), Block Kit builders, ids."""
