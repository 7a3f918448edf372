# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  access_key:
    description:
      - AWS access key ID.
      - Falls back to E(AWS_ACCESS_KEY_ID) or E(AWS_ACCESS_KEY); when unset, boto3 looks up credentials
        itself (profile, instance profile).
    type: str
    aliases: [aws_access_key_id, aws_access_key]
  secret_key:
    description:
      - AWS secret access key. Falls back to E(AWS_SECRET_ACCESS_KEY) or E(AWS_SECRET_KEY).
    type: str
    aliases: [aws_secret_access_key, aws_secret_key]
  session_token:
    description:
      - AWS session token for temporary credentials. Falls back to E(AWS_SESSION_TOKEN) or E(AWS_SECURITY_TOKEN).
    type: str
    aliases: [aws_session_token]
  profile:
    description:
      - Named profile from the AWS config files. Falls back to E(AWS_PROFILE).
    type: str
    aliases: [aws_profile]
  region:
    description:
      - AWS region. Falls back to E(AWS_REGION) or E(AWS_DEFAULT_REGION).
    type: str
    aliases: [aws_region]
  endpoint_url:
    description:
      - URL of the AWS API endpoint, for example a test server. Falls back to E(AWS_ENDPOINT_URL).
    type: str
    aliases: [aws_endpoint_url]
  retry_mode:
    description:
      - The botocore retry mode. V(adaptive) adds client-side rate limiting on top of V(standard).
    type: str
    default: standard
    choices: [standard, adaptive, legacy]
  max_attempts:
    description:
      - Total attempts of one API call, first try included, before it fails (1 to 20).
    type: int
    default: 5
  connect_timeout:
    description:
      - Seconds to wait for a connection to the AWS endpoint.
    type: float
    default: 5.0
  read_timeout:
    description:
      - Seconds to wait for an answer from the AWS endpoint.
    type: float
    default: 10.0
attributes:
  action_group:
    description: Use C(group/ec2ha.cluster.aws) in C(module_defaults) to set the AWS options of every module once.
    support: full
    membership: [ec2ha.cluster.aws]
  check_mode:
    description:
      - Can run in check mode. Every read is made; the writes the module would make are returned in
        RV(aws_calls) with C(planned=true), and none is made.
    support: full
  diff_mode:
    description: With C(--diff), returns the endpoint's state before and after (the planned state in check mode).
    support: full
  platform:
    description: The AWS APIs, called from the controller or wherever the module runs.
    support: full
    platforms: aws
requirements:
  - python >= 3.9
  - boto3 >= 1.26.27
  - botocore >= 1.29.27
"""
