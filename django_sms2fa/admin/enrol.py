"""Staff add a phone to a user's account: the "Add a phone for a user" page.

The page is ``add-for-user/`` under the phone devices (``add_phonedevice``
permission; Django's own add form stays closed). It takes a username, a
number and a "confirmed" box: unticked, the phone waits for its holder to
confirm it with a code; ticked, it is confirmed at once, and the event names
the staff member who vouched for it. The domain rules are
``device_flows.add_phone_for_user``'s; this module only translates the form
to it and its errors back to the form.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .. import device_flows
from .. import exceptions as domain
from ..client import client_ip
from ..phones import mask_phone


class AddPhoneForUserForm(forms.Form):
    username = forms.CharField(
        label=gettext_lazy("User"),
        max_length=254,
        help_text=gettext_lazy("The exact username of the account."),
    )
    phone = forms.CharField(
        label=gettext_lazy("Phone number"),
        max_length=64,
        help_text=gettext_lazy("With the country code, e.g. +46 70 123 45 67."),
    )
    confirmed = forms.BooleanField(
        label=gettext_lazy("Confirmed without a code"),
        required=False,
        help_text=gettext_lazy(
            "Tick only if you have made sure the number is the user's: the phone becomes a "
            "sign-in factor at once, and you are recorded as the one who confirmed it. "
            "Unticked, the user confirms it with a code from their phone pages."
        ),
    )

    def clean_username(self) -> Any:
        user_model = get_user_model()
        username = self.cleaned_data["username"].strip()
        user = user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username}).first()
        if user is None:
            raise forms.ValidationError(_("There is no user with this username."), code="unknown")
        return user


#: The page's template; ``PhoneDeviceAdmin.add_for_user_template`` names it.
ADD_FOR_USER_TEMPLATE = "django_sms2fa/admin/phonedevice/add_for_user.html"

#: Domain errors the form shows on its phone field.
PHONE_ERRORS = (
    domain.InvalidPhone,
    domain.NumberNotAllowed,
    domain.PhoneAlreadyEnrolled,  # PhoneConfirmedElsewhere included
)


def add_phone_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """The "add a phone for a user" page of ``PhoneDeviceAdmin``: a form, one
    flow call, a message."""
    if not model_admin.has_add_for_user_permission(request):
        raise PermissionDenied
    opts = model_admin.opts
    if request.method == "POST":
        form = AddPhoneForUserForm(request.POST)
        if form.is_valid():
            user = form.cleaned_data["username"]
            confirmed = form.cleaned_data["confirmed"]
            try:
                device = device_flows.add_phone_for_user(
                    user,
                    form.cleaned_data["phone"],
                    actor=request.user,
                    confirmed=confirmed,
                    client_ip=client_ip(request),
                )
            except PHONE_ERRORS as exc:
                form.add_error("phone", str(exc.message))
            else:
                text = (
                    _("Phone %(phone)s added to %(user)s and confirmed.")
                    if confirmed
                    else _("Phone %(phone)s added to %(user)s; they confirm it with a code.")
                )
                model_admin.message_user(
                    request,
                    text % {"phone": mask_phone(device.number), "user": user.get_username()},
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse(
                        f"admin:{opts.app_label}_{opts.model_name}_changelist",
                        current_app=model_admin.admin_site.name,
                    )
                )
    else:
        form = AddPhoneForUserForm(initial={"username": request.GET.get("username", "")})
    fieldsets = [(None, {"fields": ["username", "phone", "confirmed"]})]
    context = {
        **model_admin.admin_site.each_context(request),
        "title": _("Add a phone for a user"),
        "opts": opts,
        "form": form,
        "adminform": helpers.AdminForm(form, fieldsets, {}),
        "errors": helpers.AdminErrorList(form, []),
        "has_view_permission": model_admin.has_view_permission(request),
    }
    request.current_app = model_admin.admin_site.name
    template = getattr(model_admin, "add_for_user_template", None) or ADD_FOR_USER_TEMPLATE
    return TemplateResponse(request, template, context)
