"""Events: the App Home dashboard."""

from __future__ import annotations

from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.slack import blocks as kit
from bot.slack.app import BotServices
from bot.slack.render import home


def register(app: App, services: BotServices) -> None:
    """app_home_opened publishes the user's dashboard."""

    @app.event("app_home_opened")
    def home_opened(event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") != "home":
            return
        user = str(event["user"])
        with services.sessions() as session:
            view = home(
                session=session,
                catalog=services.catalog,
                user=user,
                now=services.clock(),
                tasks=services.tasks(),
                cache=services.cache,
            )
        client.views_publish(user_id=user, view=kit.home_view(view))
