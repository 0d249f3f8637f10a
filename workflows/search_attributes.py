"""Search attributes, so sessions can be found in the Temporal UI by tenant and status."""

from temporalio.common import SearchAttributeKey

TENANT = SearchAttributeKey.for_keyword("EarpieceTenant")
STATUS = SearchAttributeKey.for_keyword("EarpieceStatus")

SEARCH_ATTRIBUTES = [TENANT, STATUS]
