"""Effective settings: defaults < config file < ``AIOSTACK_*`` environment variables < CLI flags.

The config file is TOML; its path comes from ``AIOSTACK_CONFIG_FILE`` (or ``--config``). Keys are the
field names below, e.g. ``database_url = "postgresql://..."``.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "AIOSTACK_"
CONFIG_FILE_ENV = "AIOSTACK_CONFIG_FILE"


class Settings(BaseSettings):
    """Every knob of an aiostack process. Secrets are ``SecretStr`` so they never print by accident."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    state_dir: Path = Field(default=Path("state"), description="Where local state lives.")
    host: str = Field(default_factory=socket.gethostname, description="This node's name.")
    listen: str = Field(default="127.0.0.1:8774", description="API gateway HOST:PORT.")
    database_url: SecretStr | None = Field(
        default=None, description="PostgreSQL DSN; unset starts a private server under state_dir."
    )
    amqp_url: SecretStr | None = Field(
        default=None, description="RabbitMQ URL; unset uses the in-process bus."
    )
    bus_namespace: str = Field(default="aiostack", description="Prefix of exchanges and queues.")
    prefetch: int = Field(default=64, ge=1, description="Unacked deliveries per consumer.")
    max_batch: int = Field(default=64, ge=1, description="Deliveries handled in one transaction.")
    max_attempts: int = Field(default=5, ge=1, description="Handler attempts before dead-letter.")
    retry_delays_ms: list[int] = Field(
        default=[200, 1000, 5000, 30000], description="Backoff between handler attempts."
    )
    outbox_partitions: int = Field(default=8, ge=1, le=1024)
    outbox_batch: int = Field(default=500, ge=1)
    outbox_poll_s: float = Field(default=1.0, gt=0, description="Relay poll when idle.")
    timer_poll_s: float = Field(default=0.5, gt=0)
    heartbeat_interval_s: float = Field(default=5.0, gt=0)
    service_down_after_s: float = Field(default=15.0, gt=0)
    shutdown_grace_s: float = Field(default=10.0, gt=0)
    public_url: str | None = Field(
        default=None, description="Base URL clients use (catalog, links); default http://LISTEN."
    )
    region: str = Field(default="RegionOne", description="Region of the catalog's endpoints.")
    api_max_body_bytes: int = Field(default=1024 * 1024, ge=1024, description="JSON body limit.")
    token_ttl_s: int = Field(default=3600, ge=60, description="Lifetime of identity tokens.")
    password_min_length: int = Field(default=0, ge=0, description="Shortest password accepted.")
    lockout_attempts: int = Field(
        default=0, ge=0, description="Failed logins before a user is locked out; 0: never."
    )
    lockout_duration_s: int = Field(default=1800, ge=1)
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_memory_kib: int = Field(default=19456, ge=8)
    policy_file: Path | None = Field(
        default=None, description="YAML/JSON policy overrides (rule name -> check string)."
    )
    admin_password: SecretStr | None = Field(
        default=None, description="Bootstrap admin password; unset: generated on first bootstrap."
    )
    image_quota_count: int = Field(
        default=-1,
        ge=-1,
        description="Images a project may own (Glance image_count_total); -1: unlimited.",
    )
    image_quota_bytes: int = Field(
        default=-1,
        ge=-1,
        description="Bytes of image data a project may store (Glance image_size_total); -1: unlimited.",
    )
    image_member_quota: int = Field(
        default=128, ge=-1, description="Members one image may be shared with; -1: unlimited."
    )
    image_property_quota: int = Field(
        default=128, ge=-1, description="Extra properties one image may have; -1: unlimited."
    )
    image_tag_quota: int = Field(
        default=128, ge=-1, description="Tags one image may have; -1: unlimited."
    )
    # Compute: servers API.
    compute_max_limit: int = Field(
        default=1000,
        ge=1,
        description="Most servers one list page answers, whatever limit asks (Nova's max_limit).",
    )
    # Compute: instance operations and their deadlines.
    compute_operation_deadline_s: float = Field(
        default=120.0,
        gt=0,
        description="Deadline of reboot, pause/unpause, suspend/resume, resize confirm/revert.",
    )
    compute_resize_deadline_s: float = Field(
        default=600.0, gt=0, description="Deadline of a resize's step on its destination host."
    )
    compute_rebuild_deadline_s: float = Field(
        default=600.0, gt=0, description="Deadline of a rebuild on the instance's host."
    )
    allow_resize_to_same_host: bool = Field(
        default=True, description="A resize may stay on the instance's host (Nova's option)."
    )
    # Compute: scheduler, quotas.
    scheduler_filters: list[str] | None = Field(
        default=None, description="Enabled scheduler filters (Nova's names); unset: all."
    )
    scheduler_weighers: list[str] | None = Field(
        default=None, description="Enabled scheduler weighers (Nova's names); unset: all."
    )
    scheduler_weight_multipliers: dict[str, float] = Field(
        default_factory=dict,
        description="Weigher name -> multiplier (negative RAM/disk/CPU multipliers stack).",
    )
    scheduler_max_attempts: int = Field(
        default=3, ge=1, description="Hosts a build may be tried on before it fails."
    )
    scheduler_max_instances_per_host: int = Field(
        default=50, ge=1, description="NumInstancesFilter: instances one host may run."
    )
    # Compute: agents and host synchronisation.
    compute_driver: str = Field(
        default="auto",
        pattern="^(fake|libvirt|auto)$",
        description="Hypervisor driver of the compute agent; auto: libvirt if it answers, else fake.",
    )
    libvirt_uri: str = Field(default="qemu:///system", description="The libvirt daemon to use.")
    libvirt_virt_type: str = Field(
        default="auto",
        pattern="^(auto|kvm|qemu)$",
        description="Domain type: kvm only with hardware virtualization (auto), else qemu (TCG).",
    )
    libvirt_domain_prefix: str = Field(
        default="aiostack-",
        min_length=1,
        description="Names this host's domains (two clouds sharing one libvirtd need two prefixes).",
    )
    libvirt_shutdown_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="How long a stop waits for the guest before pulling the plug.",
    )
    instances_dir: Path = Field(
        default=Path("/var/lib/aiostack/instances"),
        description="Disks, kernels and console logs of the libvirt driver's instances; every "
        "directory above it must be searchable by the QEMU user.",
    )
    compute_auth_cloud: str = Field(
        default="aiostack-admin",
        description="clouds.yaml cloud whose credentials the compute agent fetches images with.",
    )
    compute_clouds_yaml: Path | None = Field(
        default=None,
        description="clouds.yaml of compute_auth_cloud; default state_dir/clouds.yaml.",
    )
    fake_hosts: int = Field(
        default=1, ge=1, le=10000, description="Fake hypervisors one compute process hosts."
    )
    fake_vcpus: int = Field(default=16, ge=1)
    fake_ram_mb: int = Field(default=32768, ge=1)
    fake_disk_gb: int = Field(default=500, ge=1)
    fake_spawn_latency_s: float = Field(default=0.0, ge=0)
    fake_spawn_failure_rate: float = Field(default=0.0, ge=0, le=1)
    fake_fail_images: list[str] = Field(
        default=[], description="Image ids whose spawns the fake driver fails."
    )
    compute_report_interval_s: float = Field(
        default=5.0, gt=0, description="How often each compute host reports its state."
    )
    publish_only_kinds: list[str] = Field(
        default=[
            "compute.host.state_reported",
            "compute.hosts.state_reported",
            "compute.host.resources_reported",
        ],
        description="Message kinds published without being kept in the event log (reports).",
    )
    reconcile_destroy_orphans: bool = Field(
        default=False,
        description="Destroy instances a host runs that the database does not place there.",
    )
    conductor_schedule_deadline_s: float = Field(default=60.0, gt=0)
    conductor_spawn_deadline_s: float = Field(default=300.0, gt=0)
    conductor_delete_deadline_s: float = Field(default=120.0, gt=0)
    conductor_power_deadline_s: float = Field(default=120.0, gt=0)
    conductor_step_deadlines: dict[str, float] = Field(
        default={}, description="Deadline (s) per task state, overriding or adding steps."
    )
    # Compute: snapshots, shelving, console output.
    snapshot_deadline_s: float = Field(
        default=600.0, gt=0, description="Deadline of a snapshot's (or shelve's) capture step."
    )
    shelved_offload_time: int = Field(
        default=0,
        ge=-1,
        description="Seconds before a shelved server leaves its host (Nova's): 0 at once, -1 never.",
    )
    console_output_timeout_s: float = Field(
        default=10.0, gt=0, description="How long a console output request waits for the host."
    )
    # Consoles.
    console_proxy_listen: str = Field(
        default="127.0.0.1:6080", description="Console proxy (noVNC websocket) HOST:PORT."
    )
    console_proxy_url: str | None = Field(
        default=None,
        description="Public base URL of the console proxy in console URLs; default http://LISTEN.",
    )
    console_token_ttl_s: int = Field(
        default=600, ge=1, description="Lifetime of a one-time console token (Nova's token_ttl)."
    )
    console_novnc_dir: Path | None = Field(
        default=None,
        description="Where scripts/fetch-novnc.sh put noVNC; default state_dir/novnc.",
    )
    console_allowed_origins: list[str] = Field(
        default=[],
        description="Host names of other sites whose pages may open consoles (Nova's [console] "
        "allowed_origins; JSON list); the proxy's own page is always allowed.",
    )
    fake_vnc_address: str | None = Field(
        default=None,
        description="HOST:PORT the fake driver gives as every running instance's VNC console "
        "(a test/demo aid: something there must speak RFB); unset: no VNC console.",
    )
    log_format: str = Field(default="auto", pattern="^(auto|json|console)$")
    log_level: str = Field(default="info")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    def database_dsn(self) -> str | None:
        return self.database_url.get_secret_value() if self.database_url else None

    def base_url(self) -> str:
        """Where clients reach the gateway: ``public_url``, else ``http://`` + ``listen``."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host, _, port = self.listen.rpartition(":")
        if host in ("", "0.0.0.0", "::", "[::]"):  # listening everywhere: loopback reaches it
            host = "127.0.0.1"
        return f"http://{host}:{port}"

    def console_base_url(self) -> str:
        """Where browsers reach the console proxy: ``console_proxy_url``, else its listen address."""
        if self.console_proxy_url:
            return self.console_proxy_url.rstrip("/")
        return f"http://{_reachable(self.console_proxy_listen)}"

    def amqp_dsn(self) -> str | None:
        return self.amqp_url.get_secret_value() if self.amqp_url else None

    def masked(self) -> dict[str, Any]:
        """The effective values, with passwords in URLs and secret fields replaced by ``***``."""
        shown: dict[str, Any] = {}
        for name, value in self.model_dump(mode="python").items():
            if isinstance(value, SecretStr):
                secret = value.get_secret_value()
                shown[name] = mask_url(secret) if name.endswith("_url") else "***"
            elif isinstance(value, Path):
                shown[name] = str(value)
            else:
                shown[name] = value
        return shown


def _reachable(listen: str) -> str:
    """``HOST:PORT`` a local client can connect to (a wildcard listen is reached on loopback)."""
    host, _, port = listen.rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    return f"{host}:{port}"


def mask_url(url: str) -> str:
    """Hide the password of a URL (and anything that does not parse as one)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings; ``overrides`` (CLI flags) win over everything, ``None`` means not given."""
    if config_file is not None:
        if not config_file.is_file():
            raise FileNotFoundError(f"config file not found: {config_file}")
        os.environ[CONFIG_FILE_ENV] = str(config_file)
    given = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**given)
