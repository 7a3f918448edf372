# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the tests share, once (tests/support is on sys.path through pytest.ini):

- ``moto_server``  a moto server on loopback (the lab's app), started and stopped by PID
- ``world``        a fresh EC2 / Route 53 world in that server (the integration targets' builder)
- ``calls``        what an AwsSession called: operations, writes
- ``wire``         answers at botocore's HTTP layer (throttling through botocore's own retries)
- ``clock``        a fake clock for the cores' injectable clock and sleep

The ``endpoint`` fixture (a moto server per test module) lives in tests/unit/conftest.py.
"""
