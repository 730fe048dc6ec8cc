"""The botbuilder ``CloudAdapter`` built from ``teams.*`` settings: token validation in, tokens out.

With ``teams.app_id`` set, inbound requests must carry a Bot Framework JWT for that app id (the SDK
validates issuer, audience, signature and endorsements) and outbound calls get an Entra token
(password, certificate or user-assigned managed identity). Without an app id the adapter runs
anonymously — no inbound validation, no outbound token — which is only for local testing and is logged
as a WARNING at start-up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botframework.connector.auth import CertificateServiceClientCredentialsFactory

from bot.config import TeamsSettings
from bot.errors import ConfigError

log = logging.getLogger(__name__)

ANONYMOUS_WARNING = (
    "Teams adapter is running in ANONYMOUS mode (teams.app_id is not set): requests to /api/messages are NOT "
    "authenticated and replies carry no token. Use this only for local testing; set teams.app_id and "
    "ONWATCH_TEAMS__APP_PASSWORD for any real deployment."
)


@dataclass(frozen=True)
class _SdkConfiguration:
    """The attribute names botbuilder's ``Configuration*`` classes read."""

    APP_ID: str | None
    APP_PASSWORD: str | None
    APP_TYPE: str
    APP_TENANTID: str | None


def is_anonymous(teams: TeamsSettings) -> bool:
    return not teams.app_id


def _certificate_factory(teams: TeamsSettings) -> CertificateServiceClientCredentialsFactory | None:
    """Certificate credentials when ``teams.certificate_thumbprint`` and ``teams.certificate_key_file`` exist."""
    thumbprint = getattr(teams, "certificate_thumbprint", None)
    key_file = getattr(teams, "certificate_key_file", None)
    if not thumbprint or not key_file:
        return None
    try:
        key = Path(key_file).read_text()
    except OSError as exc:
        raise ConfigError([f"teams.certificate_key_file: cannot read {key_file}: {exc.strerror}"]) from None
    return CertificateServiceClientCredentialsFactory(thumbprint, key, teams.app_id, teams.tenant_id)


def build_cloud_adapter(teams: TeamsSettings) -> CloudAdapter:
    """A CloudAdapter whose inbound validation and outbound credentials follow ``teams.*``."""
    if is_anonymous(teams):
        log.warning(ANONYMOUS_WARNING)
    if teams.app_type == "SingleTenant" and teams.app_id and not teams.tenant_id:
        raise ConfigError(["teams.tenant_id: required when teams.app_type is SingleTenant"])
    if teams.app_type == "UserAssignedMSI" and not teams.tenant_id:
        raise ConfigError(["teams.tenant_id: required when teams.app_type is UserAssignedMSI"])
    config = _SdkConfiguration(
        APP_ID=teams.app_id or None,
        APP_PASSWORD=teams.app_password.get_secret_value() if teams.app_password else None,
        APP_TYPE=teams.app_type,
        APP_TENANTID=teams.tenant_id,
    )
    auth = ConfigurationBotFrameworkAuthentication(config, credentials_factory=_certificate_factory(teams))
    return CloudAdapter(auth)
