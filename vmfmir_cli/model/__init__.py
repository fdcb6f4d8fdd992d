"""The multimodal model (encoders + vMF heads, composed from the plugin registry) and its run files.

``multimodal``: :class:`MultimodalModel`, :func:`fuse_rows`; ``store``: :func:`save_model`,
:func:`load_model`, :func:`read_model_config` and the hashes that seal a run.
"""

from vmfmir_cli.model.multimodal import MultimodalModel, fuse_rows
from vmfmir_cli.model.store import (
    ALLOW_EDITED_ENV,
    CONFIG_FILE,
    WEIGHTS_FILE,
    check_config_hash,
    config_digest,
    load_model,
    read_model_config,
    save_model,
    sha256_hex,
)

__all__ = [
    "ALLOW_EDITED_ENV",
    "CONFIG_FILE",
    "MultimodalModel",
    "WEIGHTS_FILE",
    "check_config_hash",
    "config_digest",
    "fuse_rows",
    "load_model",
    "read_model_config",
    "save_model",
    "sha256_hex",
]
