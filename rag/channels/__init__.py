"""Where questions are asked, as thin adapters around one :func:`respond`: MCP, the OpenAI chat format, the
widget, Chatwoot, the handoff to a person."""
