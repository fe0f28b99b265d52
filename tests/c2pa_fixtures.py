"""Throwaway C2PA signing material made at test time: a self-made CA and an ES256 end-entity certificate with the
extensions c2pa-rs requires of a signer (digitalSignature key usage, the emailProtection extended key usage, not a
CA, subject/authority key identifiers), and files signed with c2pa-python's Builder. Nothing here is trusted by
anyone: that is the point of the "untrusted" state."""
from __future__ import annotations

import dataclasses
import datetime
import io

import numpy as np

AI_SOURCE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
SIGNER_ORG = "DeepFake-Detect Test Generator"
SIGNER_CN = "Test Signer"


@dataclasses.dataclass(frozen=True)
class Signing:
    chain_pem: bytes  # end-entity certificate, then the CA
    key_pem: bytes
    ca_pem: bytes


def make_signing(org: str = SIGNER_ORG, cn: str = SIGNER_CN) -> Signing:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common: str, o: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, o)])

    def usage(**on) -> x509.KeyUsage:
        keys = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
                "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
        return x509.KeyUsage(**{k: on.get(k, False) for k in keys})

    def base(subject, issuer, pub):
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(pub)
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("DeepFake-Detect Test Root CA", "DeepFake-Detect tests")
    ca = (base(ca_name, ca_name, ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(usage(key_cert_sign=True, crl_sign=True), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    ee = (base(name(cn, org), ca_name, key.public_key())
          .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
          .add_extension(usage(digital_signature=True), critical=True)
          .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
          .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return Signing(chain_pem=ee.public_bytes(pem) + ca.public_bytes(pem),
                   key_pem=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
                   ca_pem=ca.public_bytes(pem))


def manifest(source_type: str = AI_SOURCE, title: str = "astronaut.jpg") -> dict:
    return {"claim_generator_info": [{"name": "deepfake-detect-tests", "version": "1.0"}], "title": title,
            "assertions": [{"label": "c2pa.actions",
                            "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": source_type}]}}]}


def sign(data: bytes, signing: Signing, mime: str = "image/jpeg", definition: dict | None = None) -> bytes:
    """``data`` with a C2PA manifest embedded and signed by ``signing`` (ES256)."""
    import c2pa

    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, signing.chain_pem,
                                                       signing.key_pem, None))
    out = io.BytesIO()
    with c2pa.Builder(definition or manifest()) as builder:
        builder.sign(signer, mime, io.BytesIO(data), out)
    return out.getvalue()


def jpeg(image: np.ndarray, exif: dict[int, str] | None = None) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    img = Image.fromarray(image)
    kw = {}
    if exif:
        e = Image.Exif()
        for tag, value in exif.items():
            e[tag] = value
        kw["exif"] = e.tobytes()
    img.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, offset of the marker, segment length incl. its 2 length bytes) up to and including SOS."""
    out, pos = [], 2
    while pos + 4 <= len(data):
        assert data[pos] == 0xFF, f"no marker at {pos}"
        marker, length = data[pos + 1], int.from_bytes(data[pos + 2:pos + 4], "big")
        out.append((marker, pos, length))
        if marker == 0xDA:
            break
        pos += 2 + length
    return out
