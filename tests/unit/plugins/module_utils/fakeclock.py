# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Old import path of ec2ha_testkit.clock (for tests not moved to it yet)."""

from ec2ha_testkit.clock import FakeClock  # noqa: F401  pylint: disable=unused-import
