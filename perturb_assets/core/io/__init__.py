"""Files and storage (stage 2): the versioned store, atomic writes, downloads, input readers.

- ``store``: :class:`VersionedStore`, every asset value and model file, versioned and verified;
- ``atomic``: atomic file writes; ``hashing``: the one file-sha256 helper;
- ``download``: resumable, checksummed HTTP downloads (Dataverse); ``archives``: safe unpacking;
- ``annotations``: GO files (GMT, GAF, MSigDB through decoupler); ``embeddings``: gene-embedding
  files."""

from perturb_assets.core.io.annotations import (
    ANNOTATION_FILES,
    ANNOTATIONS_SUBDIR,
    AnnotationDownloadError,
    go_annotations_from_decoupler,
    long_to_binary,
    read_gaf,
    read_gmt,
    user_annotation_file,
)
from perturb_assets.core.io.archives import (
    extract_gears_archive,
)
from perturb_assets.core.io.atomic import (
    atomic_write,
)
from perturb_assets.core.io.download import (
    DATAVERSE_URL,
    DATAVERSE_URL_ENV,
    DownloadError,
    DownloadResult,
    dataverse_url,
    download_file,
    is_retryable,
)
from perturb_assets.core.io.embeddings import (
    EMBEDDING_SUFFIXES,
    EMBEDDINGS_SUBDIR,
    embedding_file,
    embedding_files,
    read_embedding,
    user_embedding_file,
)
from perturb_assets.core.io.hashing import (
    sha256_file,
    sha256_files,
    update_from_file,
)
from perturb_assets.core.io.store import (
    POINTER,
    PRUNE_AFTER_S,
    STAGING_PREFIX,
    CorruptAssetError,
    StorageReadError,
    StoredVersion,
    VersionedStore,
    collect_garbage,
    compare_content_hashes,
    content_hashes,
)

__all__ = [
    "ANNOTATIONS_SUBDIR",
    "ANNOTATION_FILES",
    "AnnotationDownloadError",
    "CorruptAssetError",
    "DATAVERSE_URL",
    "DATAVERSE_URL_ENV",
    "DownloadError",
    "DownloadResult",
    "EMBEDDINGS_SUBDIR",
    "EMBEDDING_SUFFIXES",
    "POINTER",
    "PRUNE_AFTER_S",
    "STAGING_PREFIX",
    "StorageReadError",
    "StoredVersion",
    "VersionedStore",
    "atomic_write",
    "collect_garbage",
    "compare_content_hashes",
    "content_hashes",
    "dataverse_url",
    "download_file",
    "embedding_file",
    "embedding_files",
    "extract_gears_archive",
    "go_annotations_from_decoupler",
    "is_retryable",
    "long_to_binary",
    "read_embedding",
    "read_gaf",
    "read_gmt",
    "sha256_file",
    "sha256_files",
    "update_from_file",
    "user_annotation_file",
    "user_embedding_file",
]
