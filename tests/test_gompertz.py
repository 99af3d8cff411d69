"""The Gompertz curve, its fit and inverse; the abbreviated JPEG codec end to end."""

from __future__ import annotations

import math

import cv2
import msgspec
import numpy as np
import pytest

from camoffload.gompertz_fit import fit_gompertz, r_squared
from cloud_worker.processing import Pending, process_batch
from pipeline.codecs import (
    decode_jpeg,
    decode_jpeg_abbreviated,
    encode_jpeg,
    encode_jpeg_abbreviated,
    jpeg_tables,
)
from pipeline.errors import CodecError, ProtocolError
from pipeline.gompertz import GompertzCurve
from pipeline.inference import Classifier
from pipeline.protocol import ErrorCode, ErrorReply, FrameRequest, PayloadCodec, Result
from pipeline.topics import ReplyTarget
from tests._helpers import jpeg_request

# -- the curve -------------------------------------------------------------------------


def test_the_curve_by_hand() -> None:
    curve = GompertzCurve(0.9, 2.0, 5.0)
    assert curve(0.0) == pytest.approx(0.9 * math.exp(-2.0))  # 0.12180
    assert curve(0.5) == pytest.approx(0.9 * math.exp(-2.0 * math.exp(-2.5)))  # 0.76374
    assert curve.floor == pytest.approx(0.121802, abs=1e-6)
    assert curve.evaluate([0.0, 0.5]).tolist() == pytest.approx([curve(0.0), curve(0.5)])


def test_the_inverse_is_the_smallest_x_reaching_a_target() -> None:
    curve = GompertzCurve(0.9, 2.0, 5.0)
    # 0.8 = 0.9 exp(-2 exp(-5x))  =>  x = -ln(-ln(0.8/0.9)/2)/5 = 0.56641
    x = curve.inverse(0.8)
    assert x == pytest.approx(-math.log(-math.log(0.8 / 0.9) / 2.0) / 5.0)
    assert x == pytest.approx(0.56641, abs=1e-5)
    assert curve(x) == pytest.approx(0.8)
    assert curve.inverse(0.05) == 0.0  # below the floor: no data needed
    assert curve.inverse(0.9) is None  # the asymptote is never reached
    assert curve.inverse(0.95) is None


def test_parameters_out_of_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="a="):
        GompertzCurve(1.5, 1.0, 1.0)
    with pytest.raises(ValueError, match="c="):
        GompertzCurve(0.9, 1.0, float("nan"))


def test_r_squared_by_hand() -> None:
    # mean 2, SS_tot = 2, SS_res = 0.25 + 0 + 0.25 = 0.5  => 0.75
    assert r_squared([1, 2, 3], [1.5, 2, 2.5]) == pytest.approx(0.75)
    assert r_squared([1, 2, 3], [1, 2, 3]) == 1.0


def test_the_fit_recovers_a_known_curve_from_noisy_points() -> None:
    truth = GompertzCurve(0.94, 3.0, 9.0)
    rng = np.random.default_rng(0)
    x = np.linspace(0.05, 1.2, 16)
    y = truth.evaluate(x) + rng.normal(0, 0.004, x.size)
    fit = fit_gompertz(x.tolist(), y.tolist())
    assert fit.curve.a == pytest.approx(0.94, abs=0.01)
    assert fit.curve.b == pytest.approx(3.0, rel=0.2)
    assert fit.curve.c == pytest.approx(9.0, rel=0.15)
    assert fit.r2 > 0.99
    assert len(fit.residuals) == x.size
    assert fit.rmse < 0.01
    assert fit.residuals == pytest.approx((y - fit.curve.evaluate(x)).tolist())


def test_the_fit_refuses_too_few_or_impossible_points() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        fit_gompertz([0.1, 0.2], [0.5, 0.6])
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        fit_gompertz([0.1, 0.2, 0.3], [0.5, 0.6, 1.5])


# -- abbreviated JPEG ------------------------------------------------------------------

QUALITIES = (1, 10, 25, 50, 75, 90, 100)


@pytest.mark.parametrize("quality", QUALITIES)
def test_abbreviated_jpeg_decodes_to_exactly_the_full_jpeg(
    quality: int, frames: list[np.ndarray]
) -> None:
    colour = frames[0]
    grey = cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY)[100:128, 200:228, None].copy()
    for image in (colour, grey):
        shape = (image.shape[0], image.shape[1], image.shape[2])
        full = encode_jpeg(image, quality)
        short = encode_jpeg_abbreviated(image, quality)
        assert len(full) - len(short) == 18 + len(jpeg_tables(quality, shape[2]))
        restored = decode_jpeg_abbreviated(short, quality, expected_shape=shape)
        np.testing.assert_array_equal(restored, decode_jpeg(full, expected_shape=shape))


def test_the_tables_are_the_ijg_scaled_annex_k_tables() -> None:
    # Annex K.1 luminance table, natural order; the IJG quality scaling, clamped to
    # baseline (1..255). DQT stores it in zigzag order after a 5-byte header.
    base = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24,
            40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77,
            24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95,
            98, 112, 100, 103, 99]  # fmt: skip
    zigzag = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48,
              41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15,
              23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62,
              63]  # fmt: skip
    for quality in (1, 5, 25, 50, 51, 80, 95, 100):
        scale = 5000 // quality if quality < 50 else 200 - 2 * quality
        expected = [min(255, max(1, (base[i] * scale + 50) // 100)) for i in zigzag]
        tables = jpeg_tables(quality, 1)
        assert tables[:2] == b"\xff\xdb"
        assert list(tables[5:69]) == expected, quality


def test_malformed_abbreviated_jpegs_are_clear_codec_errors() -> None:
    image = np.full((28, 28, 1), 128, dtype=np.uint8)
    short = encode_jpeg_abbreviated(image, 50)
    shape = (28, 28, 1)
    with pytest.raises(CodecError, match="SOI"):
        decode_jpeg_abbreviated(b"hello" + short, 50, expected_shape=shape)
    with pytest.raises(CodecError, match=r"overruns|ends inside"):
        decode_jpeg_abbreviated(short[:12], 50, expected_shape=shape)
    with pytest.raises(CodecError, match="must not carry"):
        decode_jpeg_abbreviated(encode_jpeg(image, 50), 50, expected_shape=shape)
    with pytest.raises(CodecError, match="decodes to shape"):
        decode_jpeg_abbreviated(short, 50, expected_shape=(28, 29, 1))
    with pytest.raises(CodecError, match="1-100"):
        decode_jpeg_abbreviated(short, 0, expected_shape=shape)


def _pending(request: FrameRequest) -> Pending:
    return Pending(request, ReplyTarget("t/results/cam-1", None), 0.0)


def test_the_worker_answers_an_abbreviated_frame_like_the_full_one(
    frames: list[np.ndarray], classifier: Classifier
) -> None:
    image = frames[3]
    full = jpeg_request(image, frame_id="full", quality=40)
    short = FrameRequest.from_bytes(
        msgspec.structs.replace(
            full,
            frame_id="short",
            codec=PayloadCodec.JPEG_ABBREV,
            payload=encode_jpeg_abbreviated(image, 40),
        ).to_bytes()
    )
    broken = msgspec.structs.replace(short, frame_id="broken", payload=short.payload[:40])
    replies = [r for _, r in process_batch([_pending(full), _pending(short), _pending(broken)],
                                            classifier, "w1")]  # fmt: skip
    assert isinstance(replies[0], Result)
    assert isinstance(replies[1], Result)
    assert replies[1].label == replies[0].label
    assert replies[1].topk_scores == replies[0].topk_scores  # the very same pixels
    assert isinstance(replies[2], ErrorReply)
    assert replies[2].code is ErrorCode.BAD_REQUEST
    assert "JPEG" in replies[2].message


def test_an_abbreviated_frame_needs_a_quality() -> None:
    image = np.zeros((8, 8, 1), dtype=np.uint8)
    request = jpeg_request(image)
    with pytest.raises(ProtocolError, match="jpeg-abbrev frame needs 'quality'"):
        msgspec.structs.replace(request, codec=PayloadCodec.JPEG_ABBREV, quality=None)
