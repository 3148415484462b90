"""What each API operation does, in the words of the integrator who calls it.

The views' docstrings are written for the code's readers; drf-spectacular would show them as the
operations' descriptions. This post-processing hook gives every known operation a summary and a
description for users instead, and drops a docstring inherited from a base view.
"""

from __future__ import annotations

from typing import Any

from integrations.api.views import TenantApiView

# Each description ends with the scope the call needs; 403 and 404 follow docs/api.md's conventions.
OPERATIONS: dict[str, tuple[str, str]] = {
    # --- Events and alerts -------------------------------------------------------------------------
    "events_list": (
        "List device events",
        "What your devices reported, newest last in id order: door opened or closed, power failure, tamper, sensor "
        "fault, counter reset, firmware events and device-specific codes, each with its code, severity, the time "
        "the device gives and its message. Filter by `device`, `facility`, `kind`, `severity`, `since` and "
        "`until`. A facility manager sees the granted facilities' events. Scope `alerts:read`.",
    ),
    "alerts_list": (
        "List alerts",
        "Alerts your rules raised, one per rule and source: active, acknowledged (by whom, with the comment) or "
        "cleared. Filter by `state`, `severity`, `facility`, `device` and `rule`. Scope `alerts:read`.",
    ),
    "alerts_retrieve": ("Get an alert", "One alert by id; another tenant's is a 404. Scope `alerts:read`."),
    "alerts_acknowledge_create": (
        "Acknowledge an alert",
        "Say that someone is taking care of an active alert, with an optional comment: its reminders stop. An "
        "alert that is already acknowledged or cleared is a 400. Scope `alerts:write`.",
    ),
    "alert_rules_list": (
        "List alert rules",
        "The rules that watch your facilities, loads and devices, with their thresholds, conditions, schedules, "
        "recipients, reminders and webhooks. Scope `alerts:read`.",
    ),
    "alert_rules_create": (
        "Add an alert rule",
        "Watch one facility, load or device: demand above a threshold (kW or W), temperature beyond a limit "
        "(°C), a door open longer than `duration_s`, or a device silent for `duration_s`. A threshold in another "
        "unit, recipients outside your organisation or another tenant's webhook are a 400 and nothing is stored. "
        "Tenant admins and facility managers (for their facilities) may add rules. Scope `alerts:write`.",
    ),
    "alert_rules_retrieve": ("Get an alert rule", "One rule by id. Scope `alerts:read`."),
    "alert_rules_partial_update": (
        "Change an alert rule",
        "Change any of the rule's fields; fields left out keep their values, and the rule starts watching "
        "afresh. Scope `alerts:write`.",
    ),
    "alert_rules_destroy": ("Delete an alert rule", "Delete the rule and its alerts. Scope `alerts:write`."),
    "webhooks_list": ("List webhooks", "Where your alerts are posted, without their secrets. Scope `alerts:read`."),
    "webhooks_create": (
        "Add a webhook",
        "An https URL on a public address that receives each alert change as JSON, signed with HMAC-SHA256 "
        "in the `X-Energybox-Signature` header (`sha256=<hex>`) with the secret this answer shows once. "
        "Loopback and private addresses are refused (400). Only tenant admins add webhooks. Scope `alerts:write`.",
    ),
    "webhooks_retrieve": ("Get a webhook", "One webhook by id, without its secret. Scope `alerts:read`."),
    "webhooks_destroy": (
        "Delete a webhook",
        "Rules stop posting to it and its delivery log is deleted. Only tenant admins; another tenant's webhook "
        "is a 404. Scope `alerts:write`.",
    ),
    "cold_units_list": (
        "List cold units",
        "Your cold rooms and cabinets with their limit (°C), preset and alarm delay. Scope `alerts:read`.",
    ),
    "cold_units_create": (
        "Add a cold unit",
        "Watch a device's temperature: preset `chilled` (≤ +5 °C), `frozen` (≤ −18 °C) or `custom` with "
        "`limit_c` (−60 to +30 °C), alarmed after `alarm_delay_s` above the limit and never during a defrost. "
        "Another tenant's device or a limit out of range is a 400 and nothing is stored. Scope `alerts:write`.",
    ),
    "cold_units_retrieve": ("Get a cold unit", "One cold unit by id. Scope `alerts:read`."),
    "cold_units_partial_update": (
        "Change a cold unit",
        "Change its name, preset, custom limit or alarm delay; its temperature rule follows. Scope `alerts:write`.",
    ),
    "alert_preferences_retrieve": (
        "Get your alert e-mail preferences",
        "The lowest severity you are e-mailed about, the facilities (none: all) and your quiet hours, in each "
        "facility's local time. Scope `alerts:read`.",
    ),
    "alert_preferences_update": (
        "Set your alert e-mail preferences",
        "Replace them: `min_severity`, `facilities` (yours to see; none: all) and `quiet_start`/`quiet_end` "
        "(both or neither). Another tenant's facility or half of the quiet hours is a 400. Scope `alerts:write`.",
    ),
    # --- Facilities, loads, device groups -------------------------------------------------------
    "facilities_list": (
        "List facilities",
        "The facilities you may see, without archived ones; filter by `name` (contains), `kind`, `timezone` and "
        "`tag`. A facility manager sees only the granted facilities. Scope `fleet:read`.",
    ),
    "facilities_create": (
        "Add a facility",
        "Register a facility with its name and time zone and, optionally, its kind, address, floor area, tags, "
        "metadata, opening hours, peak target and holiday region. Only tenant admins may add facilities (403 "
        "otherwise). Scope `fleet:write`.",
    ),
    "facilities_retrieve": (
        "Get a facility",
        "One facility by id. An archived facility, or another tenant's, is a 404. Scope `fleet:read`.",
    ),
    "facilities_partial_update": (
        "Change a facility",
        "Change any of the facility's fields; fields left out keep their values. A new time zone also recomputes "
        "the facility's hourly, daily and monthly values in it. Tenant admins may change every facility, "
        "facility managers their granted ones (403 otherwise). An archived facility, or another tenant's, is a "
        "404. Scope `fleet:write`.",
    ),
    "facilities_destroy": (
        "Archive a facility",
        "Take the facility out of the park: it is no longer listed or changed, and its history stays. Refused "
        "with 400 while the facility still has devices that are not disabled: move or disable them first. Only "
        "tenant admins (403 otherwise). Scope `fleet:write`.",
    ),
    "loads_list": (
        "List loads",
        "What is metered in each facility (the main meter, refrigeration, lighting, ...), without archived "
        "loads; filter by `facility` and `kind`. Scope `fleet:read`.",
    ),
    "loads_create": (
        "Add a load",
        "Add something to meter in a facility (`facility`, `name`, optional `kind` and `cost_centre`), so "
        "channels can be allocated to it. Tenant admins, or the facility's manager (403 otherwise). An archived "
        "facility, or one you cannot see, is a 400. Scope `fleet:write`.",
    ),
    "loads_retrieve": (
        "Get a load",
        "One load by id. An archived load, or another tenant's, is a 404. Scope `fleet:read`.",
    ),
    "loads_partial_update": (
        "Change a load",
        "Rename a load, or change its kind or cost centre. Tenant admins, or the facility's manager (403 "
        "otherwise). An archived load, or another tenant's, is a 404. Scope `fleet:write`.",
    ),
    "loads_destroy": (
        "Archive a load",
        "Stop offering the load for channel allocation; past allocations, and so past reports and bills, keep "
        "it. Refused with 400 while channels still feed it: allocate them elsewhere first. Tenant admins, or the "
        "facility's manager (403 otherwise). Scope `fleet:write`.",
    ),
    "device_groups_list": (
        "List device groups",
        "Your tenant's groups of devices, e.g. for firmware rollouts. Scope `fleet:read`.",
    ),
    "device_groups_create": (
        "Add a device group",
        "Create a named group of devices, with an optional description. Only tenant admins (403 otherwise). "
        "Scope `fleet:write`.",
    ),
    "device_groups_retrieve": (
        "Get a device group",
        "One device group by id; another tenant's is a 404. Scope `fleet:read`.",
    ),
    "device_groups_partial_update": (
        "Change a device group",
        "Rename the group or change its description (tenant admins only), and add or remove devices by id with "
        "`add_devices` and `remove_devices`, in one call. A facility manager may add and remove only devices of "
        "the granted facilities (403 otherwise); a device you cannot see is a 400. Scope `fleet:write`.",
    ),
    "device_groups_destroy": (
        "Delete a device group",
        "Delete the group; its devices stay and only leave the group. Only tenant admins (403 otherwise). "
        "Scope `fleet:write`.",
    ),
    # --- Device types ---------------------------------------------------------------------------
    "device_types_list": (
        "List device types",
        "The platform's hardware catalogue and your tenant's own device types (`tenant_defined`): pick a device "
        "type here to register a device. Scope `fleet:read`.",
    ),
    "device_types_create": (
        "Define a device type",
        "Add your tenant's own hardware model beside the platform catalogue: `model_name`, `firmware_line`, "
        "optional `manufacturer`, and the channel template `channels` (each with `name`, `quantity`, `unit`, "
        "optional `phase` and `scale`). An invalid template is a 400. Only tenant admins (403 otherwise). "
        "Scope `fleet:write`.",
    ),
    "device_types_retrieve": (
        "Get a device type",
        "One device type by id, from the platform catalogue or your tenant's own; another tenant's type is a "
        "404. Scope `fleet:read`.",
    ),
    "device_types_partial_update": (
        "Change a device type",
        "Change your tenant's own device type; fields left out keep their values. Devices keep the channels they "
        "were made with: a changed template applies to devices added later. The platform catalogue is "
        "read-only: changing one of its types is a 403, as is a caller who is not a tenant admin. "
        "Scope `fleet:write`.",
    ),
    "device_types_destroy": (
        "Delete a device type",
        "Delete your tenant's own device type. Refused with 400 while devices of the type exist; a platform "
        "type, or a caller who is not a tenant admin, is a 403. Scope `fleet:write`.",
    ),
    # --- Devices ----------------------------------------------------------------------------------
    "devices_list": (
        "List devices",
        "Your meters and sensors; filter by `facility`, `device_type`, `group`, `status` and `serial` "
        "(contains). A facility manager sees the devices of the granted facilities. Scope `fleet:read`.",
    ),
    "devices_create": (
        "Register a device",
        "Add a device to a facility by `serial`, `device_type` and `facility` (optionally `name`, `groups` and "
        "`firmware_version`); its channels come from its device type. Without `public_key` (the device's own "
        "Ed25519 key, 64 hex digits) a key pair is issued and the answer carries `private_key_pem` this once "
        "(`Cache-Control: no-store`); with one, `private_key_pem` is null. A serial that cannot be registered, "
        "whoever holds it, or an archived facility is a 400; after too many refused serials (by default 20 an "
        "hour per application) the answer is a 429. Tenant admins, or the facility's manager (403 otherwise). "
        "Scope `fleet:write`.",
    ),
    "devices_retrieve": ("Get a device", "One device by id; another tenant's is a 404. Scope `fleet:read`."),
    "devices_partial_update": (
        "Change a device",
        "Move a device to another facility (`facility`: its channels' load allocations end now), set its device "
        "groups (`groups`), rename it (`name`), or disable and enable it (`enabled`: false sets the status "
        "`disabled`, which the gateway refuses); a move to another time zone recomputes the device's hourly, daily "
        "and monthly values in it. You must manage the device's facility, and for a move the target facility "
        "too (403 otherwise); an archived target facility is a 400. Scope `fleet:write`.",
    ),
    "devices_destroy": (
        "Disable a device",
        "Set the device's status to `disabled`, which the gateway refuses; nothing is deleted, and PATCH with "
        "`enabled: true` brings it back. Tenant admins, or the facility's manager (403 otherwise). "
        "Scope `fleet:write`.",
    ),
    "devices_rotate_key_create": (
        "Issue a new device key",
        "Issue a new key pair for the device: the old key stops working at once and a revocation is lifted. The "
        "answer carries the new `private_key_pem` this once (`Cache-Control: no-store`) and the new "
        "`key_version`. Tenant admins, or the facility's manager (403 otherwise). Scope `fleet:write`.",
    ),
    "devices_revoke_key_create": (
        "Revoke a device key",
        "Refuse the device's current key from its next handshake on, and answer with the device; issue a new key "
        "(`rotate-key/`) to let it back in. Revoking a revoked key changes nothing. Tenant admins, or the "
        "facility's manager (403 otherwise). Scope `fleet:write`.",
    ),
    # These routes share the device view, so they also answer GET and PATCH.
    "devices_rotate_key_retrieve": (
        "Get a device (as at the device's URL)",
        "Answers exactly like `GET /api/v1/devices/{id}/`, because this route shares the device view; read the "
        "device at its own URL. Scope `fleet:read`.",
    ),
    "devices_revoke_key_retrieve": (
        "Get a device (as at the device's URL)",
        "Answers exactly like `GET /api/v1/devices/{id}/`, because this route shares the device view; read the "
        "device at its own URL. Scope `fleet:read`.",
    ),
    "devices_rotate_key_partial_update": (
        "Move a device or set its groups (older variant)",
        "An older form of `PATCH /api/v1/devices/{id}/` that this route inherits: it takes only `facility` and "
        "`groups`, and a move does not record when the channels' allocations end. Use `PATCH "
        "/api/v1/devices/{id}/` instead. Scope `fleet:write`.",
    ),
    "devices_revoke_key_partial_update": (
        "Move a device or set its groups (older variant)",
        "An older form of `PATCH /api/v1/devices/{id}/` that this route inherits: it takes only `facility` and "
        "`groups`, and a move does not record when the channels' allocations end. Use `PATCH "
        "/api/v1/devices/{id}/` instead. Scope `fleet:write`.",
    ),
    "devices_bulk_create": (
        "Provision devices from a CSV file",
        "Upload a CSV (multipart `file`) with the columns `serial`, `type` (a device type's model name), "
        "`facility` (its name) and, optionally, `name` and `channels` (load allocations such as "
        "`0=Freezers|1=Freezers`). Every row is checked first, and it is all or nothing: a file with any bad row "
        "answers 400 with `errors` by line and stores nothing. With `dry_run` the answer is 200 with a preview; "
        "an import answers 201 with each device's id, serial and private key, shown this once. At most 10,000 "
        "rows (400 beyond); a file over 8 MB is a 413. Tenant admins, and facility managers within the granted "
        "facilities; viewers get 403. Scope `fleet:write`.",
    ),
    "devices_claim_create": (
        "Claim a factory device",
        "Add a device pre-provisioned at the factory to one of your facilities with the `serial` and "
        "`claim_code` printed on its label (optional `name`). It keeps its factory key, so no key is returned; "
        "the answer is the device (201). A serial and code that do not match a device waiting to be claimed is "
        "a 400; after 5 failed claims of one serial, or 20 in your tenant, within 15 minutes of the first, claims "
        "answer 429 until those 15 minutes are over. An archived facility, or one you cannot see, is a 400; one "
        "you do not manage is a 403. "
        "Scope `fleet:write`.",
    ),
    # --- Channels ---------------------------------------------------------------------------------
    "channels_list": (
        "List channels",
        "What each device measures: quantity, unit, scale, phase and the load it is allocated to; filter by "
        "`device`, `facility`, `device_type`, `load`, `quantity`, `phase` and `tag`. Scope `fleet:read`.",
    ),
    "channels_retrieve": ("Get a channel", "One channel by id; another tenant's is a 404. Scope `fleet:read`."),
    "channels_partial_update": (
        "Change a channel",
        "Rename a channel (`name`), tag it (`tags`), or allocate it to another load of its facility (`load`, "
        "null for none) from `valid_from` (with its UTC offset; by default now, never in the future, and after "
        "the channel's latest allocation), so readings taken before keep their earlier load. An archived load "
        "or one of another facility is a 400. Tenant admins, or the facility's manager (403 otherwise). "
        "Scope `fleet:write`.",
    ),
    "channels_allocations_list": (
        "List a channel's load allocations",
        "Which load the channel fed from when, oldest first (`load` null: none), as one list without pages. A "
        "channel you cannot see is a 404. Scope `fleet:read`.",
    ),
    # --- Users ------------------------------------------------------------------------------------
    "invitations_list": (
        "List open invitations",
        "Invitations not accepted yet, by e-mail address, with their role, facilities and expiry (expired ones "
        "included). Only tenant admins (403 otherwise). Scope `users:read`.",
    ),
    "invitations_create": (
        "Invite a user",
        "Mail `email` a link, valid for 14 days, to join your tenant as `role`: `admin`, `facility_manager` (with "
        "at least one of your `facilities`) or `viewer`. Someone who is already a member or already invited is "
        "a 400 (resend that invitation instead). Only tenant admins (403 otherwise). Scope `users:write`.",
    ),
    "invitations_retrieve": (
        "Get an invitation",
        "One open invitation by id; an accepted one, or another tenant's, is a 404. Only tenant admins (403 "
        "otherwise). Scope `users:read`.",
    ),
    "invitations_destroy": (
        "Withdraw an invitation",
        "Delete the open invitation, so its link stops working; an accepted one, or another tenant's, is a 404. "
        "Only tenant admins (403 otherwise). Scope `users:write`.",
    ),
    "invitations_resend_create": (
        "Resend an invitation",
        "Mail a new link and answer with the invitation: the old link stops working and the 14 days start "
        "again. An accepted invitation, or another tenant's, is a 404. Only tenant admins (403 otherwise). "
        "Scope `users:write`.",
    ),
    # This route shares the invitation view, so it also answers GET and DELETE.
    "invitations_resend_retrieve": (
        "Get an invitation (as at the invitation's URL)",
        "Answers exactly like `GET /api/v1/invitations/{id}/`, because this route shares the invitation view; "
        "nothing is sent. Scope `users:read`.",
    ),
    "invitations_resend_destroy": (
        "Withdraw an invitation (as at the invitation's URL)",
        "Acts exactly like `DELETE /api/v1/invitations/{id}/`, because this route shares the invitation view: "
        "the invitation is deleted and its link stops working; nothing is sent. Scope `users:write`.",
    ),
    "members_list": (
        "List members",
        "Your tenant's users with their role and, for facility managers, the granted facilities, ordered by user "
        "name. Only tenant admins (403 otherwise). Scope `users:read`.",
    ),
    "members_retrieve": (
        "Get a member",
        "One membership by id; another tenant's is a 404. Only tenant admins (403 otherwise). Scope `users:read`.",
    ),
    "members_partial_update": (
        "Change a member's role",
        "Set `role` (`admin`, `facility_manager` or `viewer`); a facility manager needs at least one of your "
        "`facilities`, which replace the granted ones, and other roles keep none. Demoting the last tenant "
        "admin is a 400. Only tenant admins (403 otherwise). Scope `users:write`.",
    ),
    "members_destroy": (
        "Remove a member",
        "The user leaves your tenant; their user account stays. Removing the last tenant admin is a 400. Only "
        "tenant admins (403 otherwise). Scope `users:write`.",
    ),
    # --- Readings ---------------------------------------------------------------------------------
    "readings_series_retrieve": (
        "Read measured values over a period",
        "Values of one or more channels from start to end: every reading, or 15-minute, hourly, daily or "
        "monthly averages, minima and maxima (consumption for energy counters), aligned to each facility's "
        "local calendar. The portal's charts show these figures. Scope `readings:read`.",
    ),
    "readings_latest_retrieve": (
        "Read the latest values",
        "The most recent reading of each channel you choose (null when a channel never reported). "
        "Scope `readings:read`.",
    ),
    "readings_export.csv_retrieve": (
        "Export measured values as CSV",
        "The same values as the series, as a CSV file, for any period length. Scope `readings:read`.",
    ),
    "readings_confirmations_create": (
        "Confirm readings outside the plausible range",
        "Confirm a channel's readings in [`start`, `end`) (with UTC offsets, at most 31 days), with an optional "
        "`note`, although they lie outside its plausible range: they then count in the rollups, peaks and "
        "bills, and the intervals are recomputed. Sending the same confirmation again stores nothing more. A "
        "channel you cannot see is a 404; one whose facility you do not manage is a 403. Scope `fleet:write`.",
    ),
    "readings_plausible_ranges_retrieve": (
        "Get a channel's plausible range",
        "The channel's `min` and `max` in its `unit` (null: no bound), at first its device type's rated range. "
        "Readings outside it are flagged `implausible` and kept out of means, peaks and bills until confirmed. "
        "A channel you cannot see is a 404. Scope `readings:read`.",
    ),
    "readings_plausible_ranges_update": (
        "Set a channel's plausible range",
        "Set `min` and `max` (null: no bound); intervals computed from now on use them, and `recompute_start` "
        "with `recompute_end` (at most 31 days) also recompute that past period. An invalid range or period is "
        "a 400; a channel you cannot see is a 404; one whose facility you do not manage is a 403. "
        "Scope `fleet:write`.",
    ),
    # --- Firmware ---------------------------------------------------------------------------------
    "firmware_images_list": (
        "List firmware images",
        "The signed firmware images of the lines your device types run: the platform's, and those your tenant "
        "uploaded for its own device types, with version, size and SHA-256 (hex); filter by `device_type` (the "
        "images of its firmware line), `firmware_line` and `version`. Scope `firmware:read`.",
    ),
    "firmware_images_create": (
        "Upload a firmware image",
        "Upload an image (multipart/form-data: `device_type`, `version`, the `image` file, optional `notes`) for "
        "one of your tenant's own device types; the platform hashes and signs it, as it does a platform admin's "
        "upload, and only your tenant sees it. A platform type, another tenant's type, a line that device types "
        "you do not own also run, an empty or oversized file or a version the line already has is a 400 and "
        "nothing is stored. Only tenant admins. Scope `firmware:write`.",
    ),
    "firmware_images_retrieve": ("Get a firmware image", "One firmware image by id. Scope `firmware:read`."),
    "firmware_rollouts_list": (
        "List rollouts",
        "Your tenant's firmware rollouts with their settings and state; filter by `state`, `device_type` and "
        "`image`. Scope `firmware:read`.",
    ),
    "firmware_rollouts_create": (
        "Start a rollout",
        "Roll `image` out to devices of `device_type`: the `target` (every device of the type, device groups, "
        "explicit devices, or a facility and/or tag filter) is resolved to your devices now and split into "
        "`waves`; the rollout starts at once, or waits for approval with `requires_approval`. Devices of "
        "another type, already on the version, not on one of `from_versions`, busy or not connected are left "
        "out. Out-of-range settings, an image of another firmware line, unknown or another tenant's ids, a "
        "target with no device to update, or an explicit device already in a rollout is a 400, and nothing is "
        "stored. Only tenant admins (403 otherwise). Scope `firmware:write`.",
    ),
    "firmware_rollouts_preview_create": (
        "Preview a rollout",
        "Takes the body of a new rollout and answers the wave plan it would start now (device ids per wave) and "
        "the devices it would leave out, with the reason (`incompatible`, `offline`, `busy`). Nothing is "
        "stored. Invalid settings are a 400, as when starting the rollout. Scope `firmware:write`.",
    ),
    "firmware_rollouts_retrieve": (
        "Get a rollout",
        "One rollout with its settings, its devices counted per status, and each wave's state and counts. "
        "Another tenant's rollout is a 404. Scope `firmware:read`.",
    ),
    "firmware_rollouts_devices_list": (
        "List a rollout's devices",
        "Each device of the rollout with its wave, status, attempts, failure reason and transfer progress "
        "(`delta`, `bytes_sent`); filter by `status`. A facility manager sees the devices of the granted "
        "facilities. Another tenant's rollout is a 404. Scope `firmware:read`.",
    ),
    "firmware_rollouts_pause_create": (
        "Pause a rollout",
        "Stop starting devices; transfers in progress finish and are recorded. Only a running rollout can be "
        "paused (400 otherwise). Only tenant admins (403 otherwise); another tenant's rollout is a 404. "
        "Scope `firmware:write`.",
    ),
    "firmware_rollouts_resume_create": (
        "Resume a rollout",
        "Run a paused rollout again: the error count starts afresh, devices waiting to retry retry now, and a "
        "wave that stopped below its success threshold counts as accepted. Only a paused rollout can be resumed "
        "(400 otherwise). Only tenant admins (403 otherwise); another tenant's rollout is a 404. "
        "Scope `firmware:write`.",
    ),
    "firmware_rollouts_cancel_create": (
        "Cancel a rollout",
        "End the rollout: transfers in progress are cancelled, and so are the devices not finished yet. A "
        "rollout that has already ended is a 400. Only tenant admins (403 otherwise); another tenant's rollout "
        "is a 404. Scope `firmware:write`.",
    ),
    "firmware_rollouts_approve_create": (
        "Approve a rollout",
        "Start a rollout that awaits approval. The approval must come from a second tenant admin: a token issued "
        "to a user other than the rollout's creator (the creator's token, or one without a user, is a 400). A "
        "rollout not awaiting approval is a 400. Only tenant admins (403 otherwise); another tenant's rollout "
        "is a 404. Scope `firmware:write`.",
    ),
    "firmware_rollouts_next_wave_create": (
        "Start a rollout's next wave",
        "For a rollout without automatic advance: start the next wave once the current one has reached its "
        "success threshold. A rollout that is not running, a wave still running, or no wave left is a 400. "
        "Only tenant admins (403 otherwise); another tenant's rollout is a 404. Scope `firmware:write`.",
    ),
    "firmware_rollouts_rollback_create": (
        "Roll back a rollout",
        "Cancel the rollout if it is still active, and start a new rollout (answered with 201) that sends the "
        "previous image to the devices that took the new one. A 400 changes nothing: for a rollback itself, "
        "when no device took the new image, when the devices ran several versions before, or when the platform "
        "does not hold the previous image. Only tenant admins (403 otherwise); another tenant's rollout is a "
        "404. Scope `firmware:write`.",
    ),
    # --- Billing ----------------------------------------------------------------------------------
    "tariffs_list": (
        "List tariffs",
        "Your tenant's tariffs, each with its currency and its price versions: validity dates, energy rates and "
        "schedules, demand prices, fixed charges, levies and VAT. Scope `billing:read`.",
    ),
    "tariffs_create": (
        "Add a tariff",
        "Create a tariff with `name`, `currency` (ISO 4217, EUR by default) and 1 to 50 `versions`, each valid "
        "from `valid_from` to `valid_to` (inclusive, or null: open-ended). Overlapping versions, a schedule that "
        "leaves an hour uncovered or an unknown currency is a 400. Only tenant admins (403 otherwise). "
        "Scope `billing:write`.",
    ),
    "tariffs_retrieve": (
        "Get a tariff",
        "One tariff with its versions; another tenant's is a 404. Scope `billing:read`.",
    ),
    "tariffs_partial_update": (
        "Change a tariff",
        "Change the name or currency; `versions`, when given, replaces all of them. Bills already issued keep "
        "the prices they were issued with. Invalid or overlapping versions are a 400. Only tenant admins (403 "
        "otherwise); another tenant's tariff is a 404. Scope `billing:write`.",
    ),
    "tariffs_destroy": (
        "Delete a tariff",
        "Delete a tariff that no contract uses; while facilities are contracted at it the answer is a 400: "
        "delete those contracts first. Only tenant admins (403 otherwise); another tenant's tariff is a 404. "
        "Scope `billing:write`.",
    ),
    "contracts_list": (
        "List contracts",
        "Which tariff each facility buys at, over which dates (local and inclusive; `valid_to` null: "
        "open-ended); filter by `facility` and `tariff`. A facility manager sees the contracts of the granted "
        "facilities. Scope `billing:read`.",
    ),
    "contracts_create": (
        "Assign a tariff to a facility",
        "Contract `facility` to `tariff` from `valid_from` to `valid_to` (inclusive local dates; null or left "
        "out: open-ended). Dates that overlap another contract of the facility, or a facility or tariff you "
        "cannot see, are a 400. Only tenant admins (403 otherwise). Scope `billing:write`.",
    ),
    "contracts_retrieve": (
        "Get a contract",
        "One contract by id; another tenant's is a 404. Scope `billing:read`.",
    ),
    "contracts_partial_update": (
        "End a contract",
        "Set `valid_to`, the contract's last day (local, inclusive), so another tariff can follow it from the "
        "next day; the month of the change is billed pro rata, each part at its own tariff. Ending before the "
        "contract begins, after its current end, or inside a month whose bill has been issued is a 400 and "
        "changes nothing. Only tenant admins (403 otherwise); another tenant's contract is a 404. "
        "Scope `billing:write`.",
    ),
    "contracts_destroy": (
        "Delete a contract",
        "Remove the contract; bills already issued stay as they are. Only tenant admins (403 otherwise); "
        "another tenant's contract is a 404. Scope `billing:write`.",
    ),
    "billing_allocation_key_retrieve": (
        "Get the allocation key",
        "How your bills share fixed charges (standing charge, metering) among loads: `equal`, by `kwh` or by "
        "the cost centres' `area`. Scope `billing:read`.",
    ),
    "billing_allocation_key_update": (
        "Choose the allocation key",
        "Set how fixed charges are shared among loads from now on: `equal`, `kwh` or `area`; another value is a "
        "400. Bills already issued keep their allocation. Only tenant admins (403 otherwise). Scope "
        "`billing:write`.",
    ),
    "cost_centres_list": (
        "List cost centres",
        "Your cost centres, each with its name, area in m² and the loads it groups; bills allocate each load's "
        "cost to its cost centre. Scope `billing:read`.",
    ),
    "cost_centres_create": (
        "Add a cost centre",
        "Group `loads` into a cost centre with a `name` (unique in your tenant) and an `area_m2` (0 or more), "
        "which the `area` key shares fixed charges by. A load you cannot see, a repeated name or a negative "
        "area is a 400. Only tenant admins (403 otherwise). Scope `billing:write`.",
    ),
    "cost_centres_retrieve": (
        "Get a cost centre",
        "One cost centre by id; another tenant's is a 404. Scope `billing:read`.",
    ),
    "cost_centres_destroy": (
        "Delete a cost centre",
        "Remove the cost centre; its loads stay. Only tenant admins (403 otherwise); another tenant's cost "
        "centre is a 404. Scope `billing:write`.",
    ),
    "bills_list": (
        "List bills",
        "Issued bills, every version, with their totals, energy and peak; filter by `facility`, `month` "
        "(YYYY-MM; another form is a 400), `status` and `client` (true: only the client's bills, which sum its "
        "facilities). A facility manager sees the bills of the granted facilities, never the client's. The "
        "running month is at `GET /api/v1/bills/draft/`. Scope `billing:read`.",
    ),
    "bills_retrieve": (
        "Get a bill",
        "One issued bill with its line items (quantity, unit, unit price, amount, and the 15-minute interval "
        "that set a demand figure), its tariff segments, cost allocation and top peaks. Another tenant's bill "
        "is a 404. Scope `billing:read`.",
    ),
    "bills_export._retrieve": (
        "Download a bill as CSV or PDF",
        "The same bill as `export.csv` or `export.pdf`; any other format is a 404, as is another tenant's bill. "
        "Scope `billing:read`.",
    ),
    "bills_draft_retrieve": (
        "Compute a month's bill now",
        "A facility's bill of `month` (YYYY-MM in the facility's time zone), computed now from the 15-minute "
        "rollups and not stored: the running month's draft with `projected_gross` to month end, or a preview of "
        "an ended month. `format` is `json` (the default), `csv` or `pdf`. A month that has not begun, or no "
        "contract covering the month, is a 400; a facility you cannot see is a 404. Scope `billing:read`.",
    ),
    "bills_client.csv_retrieve": (
        "Export the client's month as CSV",
        "One CSV row per facility for `month` (YYYY-MM): its latest issued bill, else its bill computed now; "
        "facilities without a contract covering the month are left out. A month that has not begun is a 400. "
        "A facility manager gets the granted facilities only. Scope `billing:read`.",
    ),
    "me_retrieve": (
        "Who am I",
        "The signed-in user of this token (name, e-mail, language), the tenants they belong to with their role, "
        "the tenant the token acts in, and the facilities it may see. Needs a token issued to a user (a "
        "client-credentials token is a 403). Scope `fleet:read`.",
    ),
    "me_partial_update": (
        "Change my language or notification e-mail",
        "Sets the signed-in user's `language` (de or en, the portal's too) and/or notification `email`. A new "
        "address is unverified until the link mailed to it is opened; an address another account uses is a 400. "
        "Needs a token issued to a user with the OpenID scope `profile`.",
    ),
    "me_tariff_retrieve": (
        "My home's tariff",
        "What your home pays today, as your bill shows it (VAT included): the tariff's name and currency, the "
        "price of a kWh (null when it changes with the hour) and the standing charge per month. `tariff` is null "
        "when no tariff is set. Give `facility` for another home of yours; one you cannot see is a 404. "
        "Scope `billing:read`.",
    ),
    "me_tariff_update": (
        "Set my own tariff",
        "Price your home yourself from `valid_from` (today by default): one `price_per_kwh` at every hour and a "
        "`standing_charge_per_month`, both VAT included as on your bill, in `currency` (ISO 4217). The tariff "
        "you had ends the day before, and this month's bill and projection are split at the change. A negative "
        "or absurd amount, an unknown currency, a day inside a month already billed, or another household's "
        "home changes nothing (400, or 404 for a home you cannot see). Household admins only (403 otherwise). "
        "Scope `billing:write`.",
    ),
    "facilities_energy_retrieve": (
        "Read a facility's energy per interval",
        "A facility's total kWh and each load's kWh for every hour, day or month (`resolution` 15m, 1h, 1d or "
        "1mo) from start to end, aligned to its local calendar. The total is the mains meter where there is one, "
        "else the sum of the loads; energy counters answer where they exist, else the mean power. At most "
        "10,000 intervals per call. A facility you cannot see is a 404. Scope `readings:read`.",
    ),
    "facilities_cost_retrieve": (
        "Read a facility's energy cost per interval",
        "What each hour, day or month (`resolution` 1h, 1d or 1mo) from start to end cost in energy, levies and "
        "VAT, priced by the facility's tariff exactly as its bill prices them. Monthly fixed and demand charges "
        "are on the bill (`/bills/draft/`), not in this series. An interval still ahead, or not covered by a "
        "contract, has `cost` null. At most 400 intervals per call. A facility you cannot see is a 404. "
        "Scope `billing:read`.",
    ),
    "peaks_retrieve": (
        "Read a facility's demand peaks",
        "A facility's 15-minute demand in kW (energy × 4) for `month` (YYYY-MM in its time zone): the curve, "
        "the 10 highest intervals with each load's kW in them, the month's peak, the year's peak so far and the "
        "facility's peak target. A month that has not begun is a 400; a facility you cannot see is a 404. "
        "Scope `billing:read`.",
    ),
}
_INTERNAL = (TenantApiView.__doc__ or "").strip()


def describe_operations(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            known = OPERATIONS.get(operation.get("operationId", ""))
            if known is not None:
                operation["summary"], operation["description"] = known
            elif operation.get("description", "").strip() == _INTERNAL:
                del operation["description"]
    return result
