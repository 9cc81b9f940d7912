# Loads config files with Synapse's own loader and prints what it understood, as JSON.
# usage: python synapse-probe.py -c homeserver.yaml -c secrets.yaml
import json
import sys

from synapse.config.homeserver import HomeServerConfig

c = HomeServerConfig.load_config("", sys.argv[1:])
listener = c.server.listeners[0]
probe = {
    "server_name": c.server.server_name,
    "public_baseurl": c.server.public_baseurl,
    "enable_registration": c.registration.enable_registration,
    # A main process whose media worker serves media reads no upload limit itself.
    "max_upload_size": getattr(c.media, "max_upload_size", None),
    "report_stats": c.metrics.report_stats,
    "registration_shared_secret": c.registration.registration_shared_secret,
    "macaroon_secret_key": c.key.macaroon_secret_key.decode(),
    "form_secret": c.key.form_secret,
    "database": c.database.databases[0].config,
    "bind_addresses": listener.bind_addresses,
    "port": listener.port,
    "x_forwarded": listener.http_options.x_forwarded,
    "resources": [n for r in listener.http_options.resources for n in r.names],
    "signing_keys": len(c.key.signing_key),
    "media_store_path": getattr(c.media, "media_store_path", None),
    "allow_public_rooms_over_federation": c.server.allow_public_rooms_over_federation,
    "federation_domain_whitelist": sorted(c.federation.federation_domain_whitelist or []),
    "federation_custom_ca": c.tls.federation_ca_trust_root is not None,
    "ip_range_whitelist": [str(r) for r in c.server.ip_range_allowlist.iter_cidrs()],
    "trusted_key_servers": [k.server_name for k in c.key.key_servers],
    "media_retention_ms": {
        "local": getattr(c.media, "media_retention_local_media_lifetime_ms", None),
        "remote": getattr(c.media, "media_retention_remote_media_lifetime_ms", None),
    },
    "enable_metrics": c.metrics.enable_metrics,
    "metrics_listeners": [
        [l.port, l.bind_addresses] for l in c.server.listeners if l.type == "metrics"
    ],
    "calls": {
        "msc4143": c.experimental.msc4143_enabled,
        # A flag of the stack's own, beside the program's (they are merged).
        "msc3026": c.experimental.msc3026_enabled,
        "msc4222": c.experimental.msc4222_enabled,
        "transports": c.matrix_rtc.transports,
        "delayed_events": c.server.msc4140_enabled,
        "max_event_delay_ms": c.server.max_event_delay_duration.as_millis()
        if hasattr(c.server.max_event_delay_duration, "as_millis")
        else None,
        "rc_message": [c.ratelimiting.rc_message.per_second, c.ratelimiting.rc_message.burst_count],
        "rc_delayed_event_mgmt": [
            c.ratelimiting.rc_delayed_event_mgmt.per_second,
            c.ratelimiting.rc_delayed_event_mgmt.burst_count,
        ],
        "turn_uris": c.voip.turn_uris,
        "turn_shared_secret": c.voip.turn_shared_secret,
        "turn_user_lifetime_ms": c.voip.turn_user_lifetime.as_millis()
        if hasattr(c.voip.turn_user_lifetime, "as_millis")
        else c.voip.turn_user_lifetime,
        "turn_allow_guests": c.voip.turn_allow_guests,
    },
}
if c.mas.enabled:
    probe["auth"] = {
        "mas": c.mas.enabled,
        "endpoint": str(c.mas.endpoint),
        "secret": c.mas.secret(),
        "password_login": c.auth.password_enabled_for_login,
        "msc4108": c.experimental.msc4108_enabled,
    }
print(json.dumps(probe))
