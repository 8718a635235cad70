"""The assistance bot: toolbox knowledge base, commands and the Need Assistance team."""
