"""Sign-in methods beside the phone: recovery codes, authenticator apps (TOTP),
remembered browsers — and which of them a user can sign in with.

The same layer as ``flows``: domain arguments in, domain errors out; the
edges keep the session. SMS is a restricted authenticator (NIST SP 800-63B-4
§3.1.3.3): a site offering it offers an alternative, and a user who loses
the phone is not locked out for good. Both are django-otp devices, so
``otp_required``, ``OTPMiddleware`` and ``OTPAdminSite`` count them:

* recovery codes: a :class:`~django_sms2fa.models.RecoveryCodeDevice`
  (django-otp's ``StaticDevice``) whose codes are kept as keyed hashes, shown
  once, each spent once;
* an authenticator app: django-otp's own ``TOTPDevice``, enrolled from a QR
  code drawn here as SVG, confirmed by its first code.

Every code checked here counts against the account's wrong-code lockout, the
one the phone's login codes count against (``user:<pk>``): ten wrong codes
lock every method alike. Every event is recorded as a
:class:`~django_sms2fa.models.MethodEvent`, with who and from where; none
records a code.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlencode

from django_otp.models import Device

from django.apps import apps
from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Subquery
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from . import codes, ratelimit, signals
from .conf import app_settings
from .exceptions import (
    DeviceNotFound,
    IncorrectCode,
    InvalidCode,
    MethodAlreadyEnrolled,
    MethodUnavailable,
)
from .models import (
    Method,
    MethodAction,
    MethodEvent,
    PhoneDevice,
    Purpose,
    RecoveryCode,
    RecoveryCodeDevice,
    RememberedBrowser,
)
from .types import ClientInfo

PHONE, TOTP, RECOVERY = Method.PHONE.value, Method.TOTP.value, Method.RECOVERY.value

#: The purpose bound into a recovery code's hash (``codes.hash_code``), so no
#: hash of one kind of code can stand for another.
RECOVERY_PURPOSE = "recovery"

#: Letters and digits a recovery code is made of: no 0/O or 1/l/I to misread.
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
RECOVERY_LENGTH = 10  # about 49 bits each
RECOVERY_SHAPE = _("Enter a recovery code: ten letters and digits, such as abcde-fghjk.")
NO_METHOD_FOR_CODES = _(
    "Add a phone or an authenticator app first: recovery codes stand in for one of them."
)
TOTP_SHAPE = _("Enter the 6-digit code your authenticator app shows.")


# ----------------------------------------------------------- which methods


def totp_available() -> bool:
    """Whether the site offers authenticator apps (``otp_totp`` installed)."""
    return apps.is_installed("django_otp.plugins.otp_totp")


def user_methods(user: Any) -> list[str]:
    """The methods ``user`` can prove a second factor with, the default first.

    The default is the method used last (``last_used_at`` of its devices),
    except that recovery codes are never the default while another method
    exists: using one is a sign that the usual method was out of reach, not
    a choice to keep making. One query (it runs on every login).
    """
    if user is None or getattr(user, "pk", None) is None:
        return []
    kinds: dict[str, Any] = {
        PHONE: PhoneDevice.objects.filter(user=OuterRef("pk"), confirmed=True),
        RECOVERY: RecoveryCodeDevice.objects.filter(
            user=OuterRef("pk"), confirmed=True, codes__used_at=None
        ),
    }
    if totp_available():
        kinds[TOTP] = _totp_model().objects.filter(user=OuterRef("pk"), confirmed=True)
    columns: dict[str, Any] = {}
    for method, devices in kinds.items():
        columns[f"has_{method}"] = Exists(devices)
        newest = devices.order_by(F("last_used_at").desc(nulls_last=True))
        columns[f"used_{method}"] = Subquery(newest.values("last_used_at")[:1])
    from django.contrib.auth import get_user_model

    row = (
        get_user_model()
        ._base_manager.filter(pk=user.pk)
        .annotate(**columns)
        .values(*columns)
        .first()
    )
    if row is None:
        return []
    found = {m: row[f"used_{m}"] for m in kinds if row[f"has_{m}"]}
    order = [PHONE, TOTP, RECOVERY]
    return sorted(
        found,
        key=lambda m: (m == RECOVERY, -(found[m].timestamp() if found[m] else 0), order.index(m)),
    )


def device_for(user: Any, method: str) -> Device:
    """The user's confirmed device of ``method`` (for ``django_otp.login``).

    :raises MethodUnavailable: the user has no such method.
    """
    query: Any
    if method == PHONE:
        from .adapter import get_adapter

        device = get_adapter().get_login_device(user)
        if device is None:
            raise MethodUnavailable(method=method)
        return device
    if method == TOTP and totp_available():
        query = _totp_devices(user).filter(confirmed=True)
    elif method == RECOVERY:
        query = RecoveryCodeDevice.objects.filter(user=user, confirmed=True)
    else:
        raise MethodUnavailable(method=method)
    device = query.order_by("pk").first()
    if device is None:
        raise MethodUnavailable(method=method)
    return device


def method_of(device: Any) -> str | None:
    """Which method a django-otp device is (``None`` for other device types)."""
    if isinstance(device, PhoneDevice):
        return PHONE
    if isinstance(device, RecoveryCodeDevice):
        return RECOVERY
    if totp_available() and isinstance(device, _totp_model()):
        return TOTP
    return None


def check_code(user: Any, method: str, code: Any, *, client: ClientInfo | None = None) -> Device:
    """Check a code of an authenticator app or a recovery code for ``user``.

    (A phone's code is checked through its challenge: ``flows.verify_challenge``.)

    :returns: the device that proved it.
    :raises MethodUnavailable, InvalidCode, IncorrectCode, VerificationLocked:
    """
    if method == TOTP:
        return verify_totp(user, code, client=client)
    if method == RECOVERY:
        return use_recovery_code(user, code, client=client)
    raise MethodUnavailable(method=method)


# --------------------------------------------------------- recovery codes


@sensitive_variables()
def generate_recovery_codes(
    user: Any, *, actor: Any = None, client: ClientInfo | None = None
) -> list[str]:
    """Make a new set of recovery codes for ``user``; every earlier one stops working.

    :returns: the codes, in clear, for showing once. Only their keyed hashes
        are kept.
    """
    if not can_have_recovery_codes(user):
        raise MethodUnavailable(NO_METHOD_FOR_CODES, method=RECOVERY)
    count = app_settings.RECOVERY_CODE_COUNT
    made = [_new_recovery_code() for _ in range(count)]
    now = timezone.now()
    with transaction.atomic():
        device, created = RecoveryCodeDevice.objects.get_or_create(
            user=user, defaults={"name": "Recovery codes", "confirmed": True}
        )
        RecoveryCode.objects.filter(device=device).delete()
        # New codes after a loss or a leak: a browser remembered after a
        # recovery-code login (perhaps someone else's) is forgotten with them.
        RememberedBrowser.objects.filter(
            user=user, device_id=device.persistent_id, revoked_at=None
        ).update(revoked_at=now)
        RecoveryCode.objects.bulk_create(
            [
                RecoveryCode(device=device, code_hash=_recovery_hash(device, code), created_at=now)
                for code in made
            ]
        )
        record(
            user,
            RECOVERY,
            MethodAction.ADDED if created else MethodAction.REGENERATED,
            actor=actor if actor is not None else user,
            client=client,
            detail=f"{count} codes",
        )
    _notify(user, "recovery_codes_made", client)
    return [_display(code) for code in made]


def can_have_recovery_codes(user: Any) -> bool:
    """Recovery codes back up a phone or an authenticator app: alone, they
    would be the account's only second factor, made on a page the password
    alone opened."""
    return any(m != RECOVERY for m in user_methods(user))


def recovery_codes_left(user: Any) -> int:
    """How many of the user's recovery codes are still unused."""
    return RecoveryCode.objects.filter(device__user=user, used_at=None).count()


@sensitive_variables()
def use_recovery_code(
    user: Any,
    code: Any,
    *,
    device: RecoveryCodeDevice | None = None,
    client: ClientInfo | None = None,
) -> RecoveryCodeDevice:
    """Spend one of the user's recovery codes.

    The user's phones are told by SMS, and the owner by the adapter's security
    notice: a recovery code used by someone else must not go unnoticed.

    :raises InvalidCode: not shaped like a recovery code (no attempt counted).
    :raises IncorrectCode: no unused code of the user matches (counted).
    :raises VerificationLocked: the account's wrong-code lock runs.
    """
    cleaned = clean_recovery_code(code)
    if device is None:
        device = RecoveryCodeDevice.objects.filter(user=user, confirmed=True).first()
    if device is None or device.user_id != getattr(user, "pk", None):
        raise MethodUnavailable(method=RECOVERY)

    def check() -> bool:
        now = timezone.now()
        hashes = [
            _recovery_hash(device, cleaned, secret=secret) for secret in codes.signing_secrets()
        ]
        for candidate in hashes:
            # One UPDATE decides: of two requests with the same code, one spends it.
            spent = RecoveryCode.objects.filter(
                device=device, code_hash=candidate, used_at=None
            ).update(used_at=now)
            if spent:
                RecoveryCodeDevice.objects.filter(pk=device.pk).update(last_used_at=now)
                return True
        return False

    _judged(user, RECOVERY, check, client=client)
    left = recovery_codes_left(user)
    record(user, RECOVERY, MethodAction.USED, actor=user, client=client, detail=f"{left} left")
    _notify(user, "recovery_code_used", client, left=left)
    _tell_phones(user, "recovery_code_used")
    return device


@sensitive_variables()
def clean_recovery_code(raw: Any) -> str:
    """What the user typed, as a recovery code: lower case, spaces and dashes
    dropped, nothing but the code's alphabet.

    :raises InvalidCode: anything else (nothing is compared, no attempt counted).
    """
    if not isinstance(raw, str):
        raise InvalidCode(RECOVERY_SHAPE)
    code = "".join(raw.split()).replace("-", "").lower()
    if len(code) != RECOVERY_LENGTH or not all(ch in RECOVERY_ALPHABET for ch in code):
        raise InvalidCode(RECOVERY_SHAPE)
    return code


def _new_recovery_code() -> str:
    return "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))


def _display(code: str) -> str:
    half = RECOVERY_LENGTH // 2
    return f"{code[:half]}-{code[half:]}"


@sensitive_variables()
def _recovery_hash(device: RecoveryCodeDevice, code: str, *, secret: Any = None) -> str:
    return codes.hash_code(
        code,
        challenge_id=f"recovery-{device.pk}",
        purpose=RECOVERY_PURPOSE,
        phone="",
        user_id=device.user_id,
        secret=secret,
    )


# ------------------------------------------------------- authenticator app


def _totp_model() -> Any:
    """django-otp's ``TOTPDevice`` (imported only where ``otp_totp`` is installed)."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    return TOTPDevice


def _totp_devices(user: Any) -> Any:
    return _totp_model().objects.filter(user=user)


def start_totp(user: Any, *, client: ClientInfo | None = None) -> Any:
    """Begin adding an authenticator app: a new secret, unconfirmed until
    :func:`confirm_totp` sees its first code. An earlier unconfirmed one is
    discarded.

    :raises MethodUnavailable: the site does not offer authenticator apps.
    :raises MethodAlreadyEnrolled: the user already has a confirmed one.
    """
    if not totp_available():
        raise MethodUnavailable(method=TOTP)
    devices = _totp_devices(user)
    with transaction.atomic():
        _lock_totp_rows(user)
        if devices.filter(confirmed=True).exists():
            raise MethodAlreadyEnrolled()
        devices.filter(confirmed=False).delete()
        device = _totp_model().objects.create(user=user, name="Authenticator app", confirmed=False)
    return device


def pending_totp(user: Any, device_id: Any = None) -> Any:
    """The user's authenticator app still being added.

    :raises DeviceNotFound:
    """
    query = _totp_devices(user).filter(confirmed=False)
    if device_id is not None:
        try:
            query = query.filter(pk=int(device_id))
        except (TypeError, ValueError) as err:
            raise DeviceNotFound() from err
    device = query.order_by("-pk").first()
    if device is None:
        raise DeviceNotFound()
    return device


def totp_secret(device: Any) -> str:
    """The secret in base32, for typing into an app that cannot scan."""
    return base64.b32encode(device.bin_key).decode("ascii").rstrip("=")


def totp_config_url(device: Any, issuer: str) -> str:
    """The ``otpauth://`` URI the QR code carries (the Key URI format every
    authenticator app reads)."""
    issuer = issuer.replace(":", "")
    label = f"{issuer}:{device.user.get_username()}"
    params = {
        "secret": totp_secret(device),
        "issuer": issuer,
        "algorithm": "SHA1",
        "digits": device.digits,
        "period": device.step,
    }
    return f"otpauth://totp/{quote(label)}?{urlencode(params, quote_via=quote)}"


def totp_qr_svg(device: Any, issuer: str) -> str:
    """The QR code of :func:`totp_config_url` as an inline SVG element,
    drawn here: the secret never goes to a third-party image service."""
    import segno

    qr = segno.make(totp_config_url(device, issuer), error="m")
    return qr.svg_inline(scale=5, title="QR code for your authenticator app")


def issuer_for(host: str) -> str:
    """``TOTP_ISSUER``, or the site's host name without its port."""
    return app_settings.TOTP_ISSUER or host.rsplit(":", 1)[0] or "django-sms2fa"


@sensitive_variables()
def confirm_totp(user: Any, device_id: Any, code: Any, *, client: ClientInfo | None = None) -> Any:
    """Confirm an authenticator app with its first code.

    :raises DeviceNotFound, InvalidCode, IncorrectCode, VerificationLocked:
    """
    device = pending_totp(user, device_id)
    cleaned = _clean_totp(code, device)
    _judged(user, TOTP, lambda: _totp_matches(device, cleaned), client=client)
    with transaction.atomic():
        # Two pending apps confirmed at once: the second waits here, then sees the first.
        _lock_totp_rows(user)
        if _totp_devices(user).filter(confirmed=True).exists():
            raise MethodAlreadyEnrolled()
        _totp_model().objects.filter(pk=device.pk).update(confirmed=True)
        device.confirmed = True
        record(user, TOTP, MethodAction.CONFIRMED, actor=user, client=client)
    _notify(user, "method_added", client, method=TOTP)
    return device


@sensitive_variables()
def verify_totp(user: Any, code: Any, *, client: ClientInfo | None = None) -> Any:
    """Check a code of the user's confirmed authenticator app.

    A code is accepted once (django-otp keeps the last time step used).

    :raises MethodUnavailable, InvalidCode, IncorrectCode, VerificationLocked:
    """
    device = device_for(user, TOTP)
    cleaned = _clean_totp(code, device)
    _judged(user, TOTP, lambda: _totp_matches(device, cleaned), client=client)
    record(user, TOTP, MethodAction.USED, actor=user, client=client)
    return device


def remove_totp(user: Any, *, actor: Any = None, client: ClientInfo | None = None) -> bool:
    """Remove the user's authenticator app (confirmed or not).

    The caller checks the session may (a fresh second factor: step-up).

    :returns: whether there was one.
    """
    with transaction.atomic():
        devices = list(_totp_devices(user))
        if not devices:
            return False
        confirmed = any(d.confirmed for d in devices)
        _totp_devices(user).delete()
        record(user, TOTP, MethodAction.REMOVED, actor=actor or user, client=client)
    if confirmed:
        _notify(user, "method_removed", client, method=TOTP)
        forget_browsers(user, actor=actor or user, client=client)
    return True


def _lock_totp_rows(user: Any) -> None:
    """Lock the user's authenticator-app rows (in pk order: no deadlock)
    until the transaction ends."""
    list(_totp_devices(user).select_for_update().order_by("pk").values_list("pk", flat=True))


@sensitive_variables()
def _totp_matches(device: Any, code: str) -> bool:
    """Whether ``code`` is the app's code now, used for the first time.

    django-otp's ``TOTPDevice.verify_token`` reads the last time step used,
    compares and saves it back without a lock: twelve requests with one code
    at once all passed. Here the time step is claimed by one guarded
    ``UPDATE … WHERE last_t < t``, so a code signs in once. django-otp's own
    throttle is not consulted: the account's lockout (:func:`_judged`) is the
    one limit, and a right code is never answered as wrong.
    """
    from django_otp.oath import TOTP as Totp

    totp = Totp(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time()
    if not totp.verify(int(code), device.tolerance, device.last_t + 1):
        return False
    step = totp.t()
    claimed = (
        _totp_model()
        .objects.filter(pk=device.pk, last_t__lt=step)
        .update(
            last_t=step,
            drift=totp.drift if getattr(settings, "OTP_TOTP_SYNC", True) else device.drift,
            last_used_at=timezone.now(),
            throttling_failure_count=0,
            throttling_failure_timestamp=None,
        )
    )
    if claimed:
        device.last_t = step
    return bool(claimed)


@sensitive_variables()
def _clean_totp(code: Any, device: Any) -> str:
    try:
        cleaned = codes.clean_submitted_code(code)
    except InvalidCode as err:
        raise InvalidCode(TOTP_SHAPE) from err
    if len(cleaned) != device.digits:
        raise InvalidCode(TOTP_SHAPE)
    return cleaned


# ------------------------------------------------------ remembered browsers

#: Salt of the signed cookie: it carries a browser's row id and nothing else.
BROWSER_SALT = "django_sms2fa.remembered_browser"
BROWSER_COOKIE = "sms2fa_browser"


def remembering_enabled() -> bool:
    return app_settings.REMEMBER_BROWSER_DAYS > 0


def remember_browser(user: Any, device: Device, *, client: ClientInfo | None = None) -> str:
    """Remember this browser for ``user`` after ``device`` proved a login.

    :returns: the cookie value (a signed row id; set it HttpOnly and Secure
        for ``REMEMBER_BROWSER_DAYS``).
    """
    if not remembering_enabled():
        raise MethodUnavailable(method="remember")
    now = timezone.now()
    browser = RememberedBrowser.objects.create(
        user=user,
        device_id=device.persistent_id,
        auth_fingerprint=_fingerprint(user),
        created_at=now,
        expires_at=now + timedelta(days=app_settings.REMEMBER_BROWSER_DAYS),
        user_agent=(client.user_agent if client else "")[:300],
        client_ip=client.ip if client else None,
    )
    record(
        user,
        Method(method_of(device) or PHONE),
        MethodAction.REMEMBERED,
        actor=user,
        client=client,
        detail=browser.user_agent[:300],
    )
    return signing.dumps(str(browser.pk), salt=BROWSER_SALT)


def recognised_browser(user: Any, cookie: Any) -> Device | None:
    """The device a remembered browser stands for, if ``cookie`` remembers
    this browser for ``user`` now: signed by us, not forgotten, not expired,
    the same password as when it was remembered, and the device still the
    user's and confirmed. ``None`` otherwise (and a browser remembered under
    an old password is forgotten on the way).
    """
    if not remembering_enabled() or not isinstance(cookie, str) or not cookie:
        return None
    try:
        browser_id = signing.loads(
            cookie, salt=BROWSER_SALT, max_age=timedelta(days=app_settings.REMEMBER_BROWSER_DAYS)
        )
    except signing.BadSignature:
        return None
    now = timezone.now()
    browser = (
        RememberedBrowser.objects.filter(
            pk=_uuid(browser_id),
            user_id=getattr(user, "pk", None),
            revoked_at=None,
            expires_at__gt=now,
        )
        .only("pk", "device_id", "auth_fingerprint")
        .first()
    )
    if browser is None:
        return None
    if not hmac.compare_digest(browser.auth_fingerprint, _fingerprint(user)):
        RememberedBrowser.objects.filter(pk=browser.pk).update(revoked_at=now)
        return None
    device = Device.from_persistent_id(browser.device_id)
    if device is None or device.user_id != user.pk or not device.confirmed:
        return None
    RememberedBrowser.objects.filter(pk=browser.pk).update(last_used_at=now)
    return device


def browsers_of(user: Any) -> Any:
    """The user's remembered browsers that still count, newest first."""
    fingerprint = _fingerprint(user)
    return RememberedBrowser.objects.filter(
        user=user, revoked_at=None, expires_at__gt=timezone.now(), auth_fingerprint=fingerprint
    ).order_by("-created_at")


def forget_browser(
    user: Any, browser_id: Any, *, actor: Any = None, client: ClientInfo | None = None
) -> bool:
    """Forget one of the user's remembered browsers.

    :raises DeviceNotFound: not one of the user's (or already forgotten).
    """
    forgotten = RememberedBrowser.objects.filter(
        pk=_uuid(browser_id), user=user, revoked_at=None
    ).update(revoked_at=timezone.now())
    if not forgotten:
        raise DeviceNotFound()
    record(user, PHONE, MethodAction.FORGOTTEN, actor=actor or user, client=client, detail="1")
    return True


def forget_browsers(user: Any, *, actor: Any = None, client: ClientInfo | None = None) -> int:
    """Forget every browser the user has remembered ("forget all browsers";
    also when a phone or an authenticator app is removed).

    :returns: how many were still remembered.
    """
    if user is None or getattr(user, "pk", None) is None:
        return 0
    forgotten = RememberedBrowser.objects.filter(user=user, revoked_at=None).update(
        revoked_at=timezone.now()
    )
    if forgotten:
        record(
            user,
            PHONE,
            MethodAction.FORGOTTEN,
            actor=actor,
            client=client,
            detail=str(forgotten),
        )
    return forgotten


def _fingerprint(user: Any) -> str:
    """A keyed hash of the user's session auth hash: changes with the password."""
    return salted_hmac(
        "django_sms2fa.browser_fingerprint", user.get_session_auth_hash(), algorithm="sha256"
    ).hexdigest()


def _uuid(value: Any) -> Any:
    import uuid

    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _forget_on_phone_removed(sender: Any, device: Any, **kwargs: Any) -> None:
    """A phone left the account: no browser stays remembered."""
    from django.contrib.auth import get_user_model

    user = get_user_model()._default_manager.filter(pk=device.user_id).first()
    forget_browsers(user)


signals.device_removed.connect(
    _forget_on_phone_removed, dispatch_uid="django_sms2fa.forget_browsers_on_phone_removed"
)


# ----------------------------------------------------------------- shared


def _judged(
    user: Any, method: str, check: Callable[[], bool], *, client: ClientInfo | None
) -> None:
    """Run ``check`` under the account's wrong-code lockout.

    The guess takes its place in the account's failure count before it is
    judged (``ratelimit.reserve_guess``): a burst of guesses, at any methods,
    cannot outrun the lock. Right, the count is cleared; wrong, it stays, and
    the owner is told when it reaches the lock.

    :raises VerificationLocked: the lock runs (nothing was checked).
    :raises IncorrectCode: ``check`` said no.
    """
    from . import flows

    # The account's count, the one a login code after the password adds to.
    subject = flows._lock_subject("", user.pk, purpose=Purpose.LOGIN)
    guess = ratelimit.reserve_guess(subject)  # VerificationLocked: nothing was checked
    try:
        right = check()
    except BaseException:
        ratelimit.release_guess(guess)
        raise
    if right:
        ratelimit.settle_right(guess)
        return
    failures = ratelimit.settle_wrong(guess)
    record(user, method, MethodAction.FAILED, actor=None, client=client)
    if failures == app_settings.LOCKOUT_THRESHOLD:
        _notify(user, "lockout", client)
    raise IncorrectCode()


def record(
    user: Any,
    method: str,
    action: str,
    *,
    actor: Any,
    client: ClientInfo | None = None,
    detail: str = "",
) -> MethodEvent:
    """Write one audit row for a method's event."""
    return MethodEvent.objects.create(
        created_at=timezone.now(),
        method=str(method),
        action=action,
        user=user if getattr(user, "pk", None) is not None else None,
        actor=actor if getattr(actor, "pk", None) is not None else None,
        client_ip=client.ip if client is not None else None,
        detail=detail[:300],
    )


def _notify(user: Any, event: str, client: ClientInfo | None, **extra: Any) -> None:
    signals.security_event.send(
        sender=MethodEvent,
        user=user,
        event=event,
        context={
            "phone": "",
            "new_phone": "",
            "when": timezone.now(),
            "ip": (client.ip if client else None) or "",
            **extra,
        },
    )


def _tell_phones(user: Any, event: str) -> None:
    """An SMS to each of the user's confirmed phones (a notice, no code)."""
    from . import flows
    from .adapter import get_adapter

    numbers = PhoneDevice.objects.filter(user=user, confirmed=True).values_list("number", flat=True)
    text = get_adapter().recovery_code_used_text()
    for number in numbers:
        flows.send_notice(phone=number, text=text)
