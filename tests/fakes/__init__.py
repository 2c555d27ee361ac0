"""Test doubles of Slack, Jira and Trello that speak their real wire formats on 127.0.0.1."""
