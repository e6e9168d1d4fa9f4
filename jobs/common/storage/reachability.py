"""Is the storage there, and are the keys right? One S3 request, answered with a clear message.

Asked up front by every entrypoint and the CLI, and by retry.py after a failed write, to tell an
outage (retry) from a deleted bucket or revoked keys (stop at once, naming which).
"""

from __future__ import annotations

import os
from pathlib import Path

from jobs.common.errors import StorageError
from jobs.common.storage.uris import S3Location, is_s3


def s3_client():
    import boto3

    # boto3 reads AWS_ENDPOINT_URL, the keys and the region from the environment. A new
    # session each time: the default one keeps the first keys it saw for the whole process.
    return boto3.session.Session().client("s3", region_name=os.environ.get("AWS_REGION") or "us-east-1")


def check_storage_reachable(uri: str) -> None:
    """Fail fast, before any training, if the bucket or the credentials are wrong.

    Raises StorageError, `transient` when the server is unreachable or busy.
    Also used after a failed write mid-run, to tell an outage (retry) from a
    deleted bucket or revoked keys (stop at once, naming which).
    """
    if not is_s3(uri):
        path = Path(uri)
        existing = next((p for p in [path, *path.parents] if p.exists()), None)
        if existing is None or not os.access(existing, os.W_OK):
            raise StorageError(f"storage '{uri}': local directory is not writable (nearest existing: {existing})")
        return

    import botocore.exceptions

    location = S3Location.parse(uri)
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "the AWS default endpoint")
    try:
        s3_client().list_objects_v2(Bucket=location.bucket, Prefix=location.key, MaxKeys=1)
    except botocore.exceptions.NoCredentialsError:
        raise StorageError(
            f"storage '{uri}': no S3 credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(`source .cluster/env` for the local cluster) or use an instance profile / workload identity"
        ) from None
    except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError):
        raise StorageError(
            f"storage '{uri}': cannot reach the S3 endpoint {endpoint}; is the S3 server up "
            "(`make cluster-status`)? Check AWS_ENDPOINT_URL",
            transient=True,
        ) from None
    except botocore.exceptions.ClientError as err:
        raise _client_error(uri, location, endpoint, err) from None


def _client_error(uri: str, location: S3Location, endpoint: str, err) -> StorageError:
    code = err.response.get("Error", {}).get("Code", "")
    access_key = os.environ.get("AWS_ACCESS_KEY_ID", "")
    masked = f"{access_key[:4]}..." if access_key else "(none)"
    if code in ("NoSuchBucket", "404"):
        return StorageError(
            f"storage '{uri}': bucket '{location.bucket}' does not exist at {endpoint}; create it, "
            "or point storage at an existing bucket"
        )
    if code == "InvalidAccessKeyId":
        return StorageError(
            f"storage '{uri}': the S3 server at {endpoint} does not know access key '{masked}' "
            "(revoked or mistyped); check AWS_ACCESS_KEY_ID"
        )
    if code == "SignatureDoesNotMatch":
        return StorageError(
            f"storage '{uri}': the secret key for access key '{masked}' is wrong at {endpoint} "
            "(rotated or mistyped); check AWS_SECRET_ACCESS_KEY"
        )
    if code in ("AccessDenied", "403", "Forbidden"):
        return StorageError(f"storage '{uri}': access denied to bucket '{location.bucket}' for access key '{masked}'")
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return StorageError(
        f"storage '{uri}': S3 error {code}: {err.response.get('Error', {}).get('Message', '')}",
        transient=status >= 500 or code in ("SlowDown", "RequestTimeout"),
    )
