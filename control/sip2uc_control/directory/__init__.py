"""Directory import: users from LDAP/Active Directory (Lync/Teams attributes) or CSV files.

Read records from a source (:func:`load_ldap_records`, :func:`load_csv`), compare them with the
users store (:func:`build_plan`, pure; a plan is also the dry run), then carry the plan out
through a :class:`UserRepository` (:func:`apply_plan`).
"""

from .apply import (
    ApplyResult,
    CreatedUser,
    FailedItem,
    NewUser,
    UserRepository,
    apply_plan,
    generate_handset_password,
    write_provisioning_csv,
)
from .csv_source import CsvSourceError, load_csv, read_csv
from .ldap_source import (
    DEFAULT_FILTER,
    LdapAttributeMap,
    LdapSourceConfig,
    LdapSourceError,
    fetch_ldap_records,
    load_ldap_records,
    map_ldap_entry,
)
from .model import (
    DirectoryEntry,
    DirectoryError,
    ExistingUser,
    ImportPlan,
    MissingPolicy,
    PlanAction,
    PlanItem,
    RowError,
    SourceRecord,
)
from .numbers import ExtensionFallback, NumberError, NumberPolicy, ParsedNumber
from .plan import build_plan

__all__ = [
    "DEFAULT_FILTER",
    "ApplyResult",
    "CreatedUser",
    "CsvSourceError",
    "DirectoryEntry",
    "DirectoryError",
    "ExistingUser",
    "ExtensionFallback",
    "FailedItem",
    "ImportPlan",
    "LdapAttributeMap",
    "LdapSourceConfig",
    "LdapSourceError",
    "MissingPolicy",
    "NewUser",
    "NumberError",
    "NumberPolicy",
    "ParsedNumber",
    "PlanAction",
    "PlanItem",
    "RowError",
    "SourceRecord",
    "UserRepository",
    "apply_plan",
    "build_plan",
    "fetch_ldap_records",
    "generate_handset_password",
    "load_csv",
    "load_ldap_records",
    "map_ldap_entry",
    "read_csv",
    "write_provisioning_csv",
]
