"""Files and storage (stage 2): the versioned store, atomic writes, downloads, input readers.

- ``store``: :class:`VersionedStore`, every asset value and model file, versioned and verified;
- ``atomic``: atomic file writes; ``hashing``: the one file-sha256 helper;
- ``download``: resumable, checksummed HTTP downloads (Dataverse); ``archives``: safe unpacking;
- ``annotations``: GO files (GMT, GAF, MSigDB through decoupler); ``embeddings``: gene-embedding
  files."""

from perturb_assets.core.io.annotations import (
    ANNOTATION_FILES,
    ANNOTATIONS_SUBDIR,
    GENE2GO_FILE,
    AnnotationDownloadError,
    go_annotations_from_decoupler,
    long_to_binary,
    read_gaf,
    read_gene2go,
    read_gmt,
    user_annotation_file,
    user_gene2go_file,
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
    sha256_bytes,
    sha256_file,
    sha256_files,
    update_from_file,
)
from perturb_assets.core.io.pointers import (
    POINTER,
    PointerConflict,
    Pointers,
)
from perturb_assets.core.io.serialisation import (
    Format,
    content_sha,
    deserialise,
    link_or_copy,
    local_files,
    manifest,
)
from perturb_assets.core.io.store import (
    PRUNE_AFTER_S,
    STAGING_PREFIX,
    CorruptAssetError,
    NotStoredError,
    StorageReadError,
    StorageWriteError,
    StoredVersion,
    VersionedStore,
    check_key_part,
)
from perturb_assets.core.io.store_maintenance import (
    collect_garbage,
    compare_content_hashes,
    content_hashes,
    pid_alive,
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
    "Format",
    "GENE2GO_FILE",
    "NotStoredError",
    "POINTER",
    "PRUNE_AFTER_S",
    "PointerConflict",
    "Pointers",
    "STAGING_PREFIX",
    "StorageReadError",
    "StorageWriteError",
    "StoredVersion",
    "VersionedStore",
    "atomic_write",
    "check_key_part",
    "collect_garbage",
    "compare_content_hashes",
    "content_hashes",
    "content_sha",
    "dataverse_url",
    "deserialise",
    "download_file",
    "embedding_file",
    "embedding_files",
    "extract_gears_archive",
    "go_annotations_from_decoupler",
    "is_retryable",
    "link_or_copy",
    "local_files",
    "long_to_binary",
    "manifest",
    "pid_alive",
    "read_embedding",
    "read_gene2go",
    "read_gaf",
    "read_gmt",
    "sha256_bytes",
    "sha256_file",
    "sha256_files",
    "update_from_file",
    "user_annotation_file",
    "user_gene2go_file",
    "user_embedding_file",
]
