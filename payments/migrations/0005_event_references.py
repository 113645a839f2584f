"""The references a raw provider event's body names (the provider's and ours), kept on the row so
an operator finds every delivery about an object, mappable or not; filled for stored events from
their bodies, then made part of the content the database refuses to change."""

import json

from django.db import migrations, models

BATCH = 2000

# The body fields naming the objects, as the providers' formats define them (frozen here: a later
# mapper version must not change what this migration did).
REFERENCE_FIELDS = {"sim": ("provider_reference", "merchant_reference")}

IMMUTABLE = r"""
CREATE OR REPLACE FUNCTION payments_raw_event_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'a raw provider event is kept for ever: DELETE refused on %', OLD.public_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.public_id, NEW.provider_code, NEW.provider_event_id, NEW.received_at, NEW.headers, NEW.body,
        NEW.body_sha256, NEW.signature_verdict, NEW.duplicate_of_id{new_extra})
       IS DISTINCT FROM
       (OLD.public_id, OLD.provider_code, OLD.provider_event_id, OLD.received_at, OLD.headers, OLD.body,
        OLD.body_sha256, OLD.signature_verdict, OLD.duplicate_of_id{old_extra}) THEN
        RAISE EXCEPTION 'a raw provider event''s content is immutable: UPDATE refused on %', OLD.public_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
"""
WITH_REFERENCES = IMMUTABLE.format(
    new_extra=", NEW.provider_reference, NEW.our_reference", old_extra=", OLD.provider_reference, OLD.our_reference"
)
WITHOUT_REFERENCES = IMMUTABLE.format(new_extra="", old_extra="")


def _text(value, max_length: int) -> str:
    if isinstance(value, str) and 0 < len(value.strip()) <= max_length and value.isprintable():
        return value.strip()
    return ""


def fill_references(apps, schema_editor):
    ProviderEventRaw = apps.get_model("payments", "ProviderEventRaw")
    last = 0
    while True:
        rows = list(
            ProviderEventRaw.objects.filter(pk__gt=last, signature_verdict="VALID")
            .order_by("pk")
            .values_list("pk", "provider_code", "body")[:BATCH]
        )
        if not rows:
            return
        for pk, provider_code, body in rows:
            last = pk
            fields = REFERENCE_FIELDS.get(provider_code)
            if fields is None:
                continue
            try:
                document = json.loads(bytes(body))
            except (ValueError, UnicodeDecodeError, RecursionError):
                continue
            if not isinstance(document, dict):
                continue
            provider_reference, our_reference = _text(document.get(fields[0]), 128), _text(document.get(fields[1]), 64)
            if provider_reference or our_reference:
                ProviderEventRaw.objects.filter(pk=pk).update(
                    provider_reference=provider_reference, our_reference=our_reference
                )


class Migration(migrations.Migration):
    dependencies = [("payments", "0004_search_indexes")]

    operations = [
        migrations.AddField(
            model_name="providereventraw",
            name="provider_reference",
            field=models.CharField(blank=True, default="", max_length=128),
        ),
        migrations.AddField(
            model_name="providereventraw",
            name="our_reference",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.RunPython(fill_references, migrations.RunPython.noop),
        migrations.RunSQL(WITH_REFERENCES, WITHOUT_REFERENCES),
    ]
