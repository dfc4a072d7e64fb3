"""startproject's middleware as Django 6.2 declares them (ticket #37177): async_capable = False.

Django 6.2 sets the flag on its own MiddlewareMixin subclasses; listing these
subclasses instead runs today's Django exactly as 6.2 will (the hooks are the
same code), so the audit's 6.2 preview can be checked against real requests.
"""

from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.middleware import clickjacking, common, csrf, security


class SecurityMiddleware(security.SecurityMiddleware):
    async_capable = False


class SessionMiddleware(sessions.SessionMiddleware):
    async_capable = False


class CommonMiddleware(common.CommonMiddleware):
    async_capable = False


class CsrfViewMiddleware(csrf.CsrfViewMiddleware):
    async_capable = False


class AuthenticationMiddleware(auth.AuthenticationMiddleware):
    async_capable = False


class MessageMiddleware(messages.MessageMiddleware):
    async_capable = False


class XFrameOptionsMiddleware(clickjacking.XFrameOptionsMiddleware):
    async_capable = False
