"""django-two-factor-auth's SMS and call tokens through this app
(docs/integrations/two-factor-auth.md).

Point ``TWO_FACTOR_SMS_GATEWAY`` (and ``TWO_FACTOR_CALL_GATEWAY``, where a
provider calls) at :class:`django_sms2fa.contrib.two_factor.gateway.Sms2faGateway`.
"""
