"""KMS through boto3: keys and aliases, Encrypt/Decrypt with encryption contexts, data keys,
ReEncrypt, rotation that keeps old ciphertexts readable, disabling, scheduled deletion, and
KMS's error types."""
from common import Answers, done, error, service_client

kms = service_client("kms")
raw = service_client("kms", validate=False)
answers = Answers(kms, raw)
PLAIN = b"kms-plaintext-91c4e0d7"

key = kms.create_key(Description="app key", Tags=[{"TagKey": "team", "TagValue": "core"}])["KeyMetadata"]
assert (key["KeyState"], key["KeySpec"], key["KeyUsage"], key["KeyManager"]) == \
    ("Enabled", "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", "CUSTOMER"), key
assert key["Arn"] == f"arn:aws:kms:us-east-1:000000000000:key/{key['KeyId']}", key
kms.create_alias(AliasName="alias/app", TargetKeyId=key["KeyId"])
for ref in [key["KeyId"], key["Arn"], "alias/app", "arn:aws:kms:us-east-1:000000000000:alias/app"]:
    assert kms.describe_key(KeyId=ref)["KeyMetadata"]["KeyId"] == key["KeyId"], ref

context = {"app": "web", "stage": "prod"}
enc = kms.encrypt(KeyId="alias/app", Plaintext=PLAIN, EncryptionContext=context)
assert enc["KeyId"] == key["Arn"] and PLAIN not in enc["CiphertextBlob"], enc
dec = kms.decrypt(CiphertextBlob=enc["CiphertextBlob"], EncryptionContext=context)
assert (dec["Plaintext"], dec["KeyId"]) == (PLAIN, key["Arn"]), dec
assert error(kms.decrypt, CiphertextBlob=enc["CiphertextBlob"])[0] == "InvalidCiphertextException"
assert error(kms.decrypt, CiphertextBlob=enc["CiphertextBlob"],
             EncryptionContext={"app": "web", "stage": "dev"})[0] == "InvalidCiphertextException"
assert error(kms.decrypt, CiphertextBlob=b"not a ciphertext at all")[0] == "InvalidCiphertextException"

other = kms.create_key()["KeyMetadata"]
assert error(kms.decrypt, CiphertextBlob=enc["CiphertextBlob"], EncryptionContext=context,
             KeyId=other["KeyId"])[0] == "IncorrectKeyException"
moved = kms.re_encrypt(CiphertextBlob=enc["CiphertextBlob"], SourceEncryptionContext=context,
                       DestinationKeyId=other["Arn"], DestinationEncryptionContext={"to": "other"})
assert (moved["SourceKeyId"], moved["KeyId"]) == (key["Arn"], other["Arn"]), moved
assert kms.decrypt(CiphertextBlob=moved["CiphertextBlob"],
                   EncryptionContext={"to": "other"})["Plaintext"] == PLAIN

data = kms.generate_data_key(KeyId="alias/app", KeySpec="AES_256", EncryptionContext={"k": "v"})
assert len(data["Plaintext"]) == 32
assert kms.decrypt(CiphertextBlob=data["CiphertextBlob"], EncryptionContext={"k": "v"})["Plaintext"] == data["Plaintext"]
assert len(kms.generate_data_key(KeyId=key["KeyId"], NumberOfBytes=7)["Plaintext"]) == 7
blind = kms.generate_data_key_without_plaintext(KeyId=key["KeyId"], KeySpec="AES_128")
assert "Plaintext" not in blind and len(kms.decrypt(CiphertextBlob=blind["CiphertextBlob"])["Plaintext"]) == 16
assert error(raw.generate_data_key, KeyId=key["KeyId"])[0] == "ValidationException"
assert error(raw.generate_data_key, KeyId=key["KeyId"], KeySpec="AES_256", NumberOfBytes=8)[0] == "ValidationException"

# Rotation: new ciphertexts use new material, old ones still decrypt.
kms.enable_key_rotation(KeyId=key["KeyId"], RotationPeriodInDays=90)
status = kms.get_key_rotation_status(KeyId=key["KeyId"])
assert status["KeyRotationEnabled"] and status["RotationPeriodInDays"] == 90, status
assert error(raw.enable_key_rotation, KeyId=key["KeyId"], RotationPeriodInDays=30)[0] == "ValidationException"
kms.rotate_key_on_demand(KeyId=key["KeyId"])
rotations = kms.list_key_rotations(KeyId=key["KeyId"])["Rotations"]
assert [r["RotationType"] for r in rotations] == ["ON_DEMAND"], rotations
after = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"after")
assert kms.decrypt(CiphertextBlob=after["CiphertextBlob"])["KeyMaterialId"] == rotations[0]["KeyMaterialId"]
old = kms.decrypt(CiphertextBlob=enc["CiphertextBlob"], EncryptionContext=context)
assert old["Plaintext"] == PLAIN and old["KeyMaterialId"] != rotations[0]["KeyMaterialId"], old
kms.disable_key_rotation(KeyId=key["KeyId"])
assert not kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"]

# Disabled and pending deletion.
kms.disable_key(KeyId=key["KeyId"])
assert kms.describe_key(KeyId="alias/app")["KeyMetadata"]["KeyState"] == "Disabled"
assert error(kms.encrypt, KeyId="alias/app", Plaintext=b"x")[0] == "DisabledException"
assert error(kms.generate_data_key, KeyId="alias/app", KeySpec="AES_256")[0] == "DisabledException"
assert error(kms.enable_key_rotation, KeyId=key["KeyId"])[0] == "DisabledException"
assert error(kms.rotate_key_on_demand, KeyId=key["KeyId"])[0] == "DisabledException"
kms.enable_key(KeyId=key["KeyId"])
assert error(kms.schedule_key_deletion, KeyId=other["KeyId"], PendingWindowInDays=3)[0] == "ValidationException"
kms.enable_key_rotation(KeyId=other["KeyId"])
scheduled = kms.schedule_key_deletion(KeyId=other["KeyId"], PendingWindowInDays=7)
assert scheduled["KeyState"] == "PendingDeletion" and scheduled["PendingWindowInDays"] == 7, scheduled
assert error(kms.decrypt, CiphertextBlob=moved["CiphertextBlob"],
             EncryptionContext={"to": "other"})[0] == "KMSInvalidStateException"
assert not kms.get_key_rotation_status(KeyId=other["KeyId"])["KeyRotationEnabled"]
for call in [kms.enable_key, kms.disable_key, kms.schedule_key_deletion]:
    assert error(call, KeyId=other["KeyId"])[0] == "KMSInvalidStateException", call
assert error(kms.create_alias, AliasName="alias/doomed", TargetKeyId=other["KeyId"])[0] == "KMSInvalidStateException"
kms.cancel_key_deletion(KeyId=other["KeyId"])
assert kms.describe_key(KeyId=other["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"
assert kms.get_key_rotation_status(KeyId=other["KeyId"])["KeyRotationEnabled"]
assert error(kms.cancel_key_deletion, KeyId=other["KeyId"])[0] == "KMSInvalidStateException"

# Aliases and listing with pages.
for i in range(5):
    k = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName=f"alias/bulk-{i}", TargetKeyId=k["KeyId"])
keys, marker, pages = [], None, 0
while True:
    kwargs = {"Limit": 3}
    if marker:
        kwargs["Marker"] = marker
    page = kms.list_keys(**kwargs)
    keys += [k["KeyId"] for k in page["Keys"]]
    pages += 1
    assert page["Truncated"] == ("NextMarker" in page), page
    marker = page.get("NextMarker")
    if not marker:
        break
assert len(keys) == 7 and len(set(keys)) == 7 and pages == 3, (keys, pages)
assert error(kms.list_keys, Marker="forged")[0] == "InvalidMarkerException"
aliases = [a["AliasName"] for p in kms.get_paginator("list_aliases").paginate(PaginationConfig={"PageSize": 2})
           for a in p["Aliases"]]
assert "alias/app" in aliases and "alias/bulk-4" in aliases, aliases
assert [a["AliasName"] for a in kms.list_aliases(KeyId=key["KeyId"])["Aliases"]] == ["alias/app"]
kms.update_alias(AliasName="alias/app", TargetKeyId=other["KeyId"])
assert kms.describe_key(KeyId="alias/app")["KeyMetadata"]["KeyId"] == other["KeyId"]
kms.delete_alias(AliasName="alias/app")

# Errors KMS gives.
assert error(kms.create_alias, AliasName="alias/bulk-0", TargetKeyId=key["KeyId"])[0] == "AlreadyExistsException"
assert error(kms.create_alias, AliasName="alias/aws/mine", TargetKeyId=key["KeyId"])[0] == "InvalidAliasNameException"
assert error(kms.describe_key, KeyId="alias/none")[0] == "NotFoundException"
assert error(kms.describe_key, KeyId="00000000-0000-0000-0000-000000000000")[0] == "NotFoundException"
assert error(kms.create_key, KeySpec="RSA_2048")[0] == "UnsupportedOperationException"
assert error(raw.create_key, KeySpec="NOPE")[0] == "ValidationException"
assert error(kms.encrypt, KeyId=key["KeyId"], Plaintext=b"x" * 4097)[0] == "ValidationException"
assert error(kms.encrypt, KeyId=key["KeyId"], Plaintext=b"x",
             EncryptionAlgorithm="RSAES_OAEP_SHA_256")[0] == "InvalidKeyUsageException"
assert error(kms.encrypt, KeyId=key["KeyId"], Plaintext=b"x", DryRun=True)[0] == "DryRunOperationException"
# An AWS managed key is made by its alias and cannot be managed.
managed = kms.describe_key(KeyId="alias/aws/secretsmanager")["KeyMetadata"]
assert managed["KeyManager"] == "AWS", managed
assert error(kms.schedule_key_deletion, KeyId=managed["KeyId"])[0] == "UnsupportedOperationException"

plain_b64 = __import__("base64").b64encode(PLAIN).decode()
holding = set(answers.holding(plain_b64))
assert holding == {"Decrypt"}, holding
done("kms")
