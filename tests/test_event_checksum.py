"""The TFRecord checksum of the event writer: the C crc32c, masked as TFRecord masks it."""

from __future__ import annotations

import numpy as np
import pytest
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as tensorboard_crc

from keras_inits.tensorboard import writer


def test_the_fast_checksum_is_in_use():
    # The pure-Python fallback costs ~10 ms a write: the dependency must be what runs.
    assert writer._google_crc32c is not None


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 4096, 100_003])
def test_checksum_equals_tensorboards(size):
    data = np.random.default_rng(size).bytes(size)
    assert writer.masked_crc32c(data) == tensorboard_crc(data)


def _tfrecord_mask(crc: int) -> int:
    """TFRecord's mask: rotate right by 15 bits, add 0xa282ead8 (mod 2**32)."""
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@pytest.mark.parametrize("data, crc", [
    (b"123456789", 0xE3069283),  # the CRC-32C check value
    (bytes(32), 0x8A9136AA),  # 32 zero bytes (RFC 3720, B.4)
])
def test_checksum_of_known_vectors(data, crc):
    assert writer.masked_crc32c(data) == _tfrecord_mask(crc)


def test_framed_record_reads_back(tmp_path):
    payload = b"an event" * 1000
    path = tmp_path / "events.out.tfevents.0.test"
    path.write_bytes(writer.frame_record(payload) + writer.frame_record(b""))
    assert list(writer.read_records(str(path))) == [payload, b""]
