"""Idempotency-Key handling: request fingerprints, booking ids and key records.

A request with an Idempotency-Key gets a booking id derived from the key and the
request, so repeating it yields the same booking, and the processor drops the
repeated command by that id. Redis records which request each key was first used
for, so that reusing a key for another request is rejected.
"""

import hashlib
import json
import logging
from uuid import UUID, uuid4, uuid5

from redis.exceptions import RedisError

from read_api.body import BookTicketsBody
from read_api.deps import Resources
from read_api.errors import validation_error
from read_api.read_models import redis_failures

logger = logging.getLogger(__name__)

# Booking ids for requests with an Idempotency-Key are uuid5 in this namespace.
BOOKING_NAMESPACE = UUID("56e90356-b4db-402f-b15f-aea2cce4aa11")


def request_fingerprint(body: BookTicketsBody) -> str:
    """Return a hash of the request, the same for requests that book the same seats."""
    canonical = {
        "showtimeId": str(body.showtime_id),
        "seats": sorted(body.seats),
        "wheelchairSpaces": sorted(body.wheelchair_spaces),
        "paymentMethod": body.payment_method,
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def booking_id_for(idempotency_key: str | None, fingerprint: str) -> str:
    """Return the booking id: derived from the key and the request, or random.

    The request's fingerprint is part of the name, so a key reused for another
    request after its Redis record expired (or Redis lost it) makes a new booking
    instead of being dropped as a duplicate of the old one.
    """
    if idempotency_key is None:
        return str(uuid4())
    return str(uuid5(BOOKING_NAMESPACE, f"{idempotency_key}\n{fingerprint}"))


async def claim_idempotency_key(
    resources: Resources, key: str, booking_id: str, fingerprint: str
) -> None:
    """Record which request an Idempotency-Key belongs to, or raise 422 for another.

    When Redis fails, reuse of a key for another request goes undetected: that
    request gets its own booking id from its own fingerprint, so it is booked as a
    new booking and not mistaken for the earlier one.
    """
    redis_key = resources.keys.idempotency(key)
    record = json.dumps({"bookingId": booking_id, "fingerprint": fingerprint})
    try:
        ttl_s = resources.settings.IDEMPOTENCY_TTL_S
        if await resources.redis.set(redis_key, record, nx=True, ex=ttl_s):
            return
        stored = await resources.redis.get(redis_key)
    except RedisError as error:
        redis_failures.log(logging.WARNING, f"Idempotency-Key check {key}", error)
        return

    if stored is None or stored_fingerprint(stored) in (fingerprint, None):
        return
    msg = (
        f"Idempotency-Key {key} was already used for a different request: "
        "send a new key for a new booking"
    )
    raise validation_error(
        ("header", "Idempotency-Key"), msg, key, "idempotency_key_reused"
    )


def stored_fingerprint(record: bytes | str) -> str | None:
    """Return the fingerprint of an idempotency record, or None when unreadable."""
    try:
        fingerprint = json.loads(record)["fingerprint"]
    except (ValueError, KeyError, TypeError):
        logger.warning("idempotency record %r is unreadable, so it is ignored", record)
        return None
    return fingerprint if isinstance(fingerprint, str) else None
