from __future__ import annotations

import pytest
from oauth2_provider.models import AccessToken

from integrations.tasks import clear_expired_tokens_task
from integrations.tests.factories import AccessTokenFactory

pytestmark = pytest.mark.django_db


def test_the_hourly_task_deletes_expired_tokens_and_keeps_valid_ones():
    expired = AccessTokenFactory(expired=True)
    valid = AccessTokenFactory()
    clear_expired_tokens_task.apply()
    assert not AccessToken.objects.filter(pk=expired.pk).exists()
    assert AccessToken.objects.filter(pk=valid.pk).exists()
