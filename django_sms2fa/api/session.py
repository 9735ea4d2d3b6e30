"""The session state of the API: it lives in ``django_sms2fa.session``,
shared with the HTML pages; these names stay importable from here."""

from ..session import (  # noqa: F401
    MAX_OWNED,
    OWNED_KEY,
    PENDING_KEY,
    PHONE_BACKEND,
    clear_pending_login,
    complete_login,
    complete_passwordless_login,
    extend_pending_login,
    get_pending_login,
    owns_challenge,
    passwordless_enabled,
    pending_login_user,
    phone_login_backend,
    remember_challenge,
    set_pending_login,
)
from ..session_keys import METHOD_KEY, PASSWORD_AND_SMS, PASSWORDLESS  # noqa: F401
