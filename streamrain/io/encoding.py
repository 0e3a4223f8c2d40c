"""What an output is encoded with, settled before the first frame is decoded.

``plan_output`` turns the encoder choices (``EncodeOptions``: ``--codec``, ``--crf``, ``--preset``,
``--pix-fmt``, ``--audio-codec``, ``--no-audio``) and the input's description into an
``OutputPlan``: the video encoder with its pixel format and options, and for every other input
stream whether it is copied, re-encoded (with what) or left out. A choice that was given is
honoured or refused with a one-line ConfigError naming the flag; none is dropped silently.

What was not given is chosen for the container: H.264 (libx264) wherever the container takes it,
VP9 for WebM, else the container's own default; the input's pixel format when the encoder takes
it, else 4:2:0, else the first the encoder takes that fits the frame size; audio copied when the
container takes its codec, else re-encoded to the container's usual one (AAC; Opus for WebM and
Ogg; MP3 for AVI). ``--crf 0`` is lossless wherever the encoder has a lossless mode.

Every decision is checked the way FFmpeg checks it, by opening the encoder and writing a header
into an in-memory file of the output's container, so a refusal comes before anything is decoded
or written instead of as ``avcodec_open2(...) returned 22`` in the middle of a run.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av

from streamrain.errors import ConfigError

log = logging.getLogger(__name__)

AUTO = "auto"
# --preset fastest: each encoder's fastest preset (x264's ultrafast, VP9's cpu-used 8, ...), for a
# recording that must keep up (the live preview); an encoder without known presets runs as it is.
FASTEST = "fastest"


@dataclass(frozen=True)
class EncodeOptions:
    """The encoder choices of one output; ``"auto"`` (and ``None``) leave the choice to the plan."""

    codec: str = AUTO
    crf: int | None = None  # None: the encoder's default quality; 0: lossless
    preset: str | None = AUTO  # the encoder's speed preset
    pix_fmt: str = AUTO
    copy_audio: bool = True  # False: the video stream only (--no-audio)
    audio_codec: str = AUTO  # "auto", "copy" (or refuse), or an audio encoder to re-encode with
    threads: int | None = None  # the encoder's threads; None: the codec's own choice (one per core)


def given(value) -> bool:
    return value is not None and value != AUTO


# -- what streamrain knows of the encoders it picks -------------------------------------------------

_X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                 "veryslow", "placebo")


@dataclass(frozen=True)
class _Encoder:
    """How one encoder's quality and speed are set. ``lossless``: the options of its lossless mode
    (None: it has none). ``presets``: what ``--preset`` takes, set as the option ``preset_option``."""

    crf_range: tuple[int, int]
    default_crf: int
    lossless: dict[str, str] | None
    presets: tuple[str, ...]
    default_preset: str
    fastest_preset: str  # what --preset fastest (the live preview's default) names for this encoder
    preset_option: str = "preset"
    with_crf: dict[str, str] = field(default_factory=dict)  # options constant quality needs beside crf
    always: dict[str, str] = field(default_factory=dict)


def _numbers(low: int, high: int) -> tuple[str, ...]:
    return tuple(str(i) for i in range(low, high + 1))


_X264 = _Encoder((0, 51), 18, {"qp": "0"}, _X26X_PRESETS, "veryfast", "ultrafast")
_ENCODERS = {
    # x264's crf 0 is lossless only at 8 bits; qp 0 is lossless at every depth.
    "libx264": _X264,
    "libx264rgb": _X264,
    # x265 logs to stderr itself unless told not to; its crf 0 is not lossless, lossless=1 is.
    "libx265": _Encoder((0, 51), 20, {"x265-params": "lossless=1"}, _X26X_PRESETS, "veryfast", "ultrafast",
                        always={"x265-params": "log-level=error"}),
    # libvpx's own default (cpu-used 1) is several times slower than 4 for little gain.
    "libvpx-vp9": _Encoder((0, 63), 28, {"lossless": "1"}, _numbers(0, 8), "4", "8", preset_option="cpu-used",
                           with_crf={"b": "0"}, always={"deadline": "good", "row-mt": "1"}),
    # FFmpeg's libsvtav1 reads crf 0 as "not set"; SVT-AV1 has a lossless mode of its own.
    "libsvtav1": _Encoder((1, 63), 30, {"svtav1-params": "lossless=1"}, _numbers(0, 13), "8", "13"),
}

# Video and audio encoders offered in messages (those of them this FFmpeg build has).
_VIDEO_SUGGESTIONS = ("libx264", "libx265", "libx264rgb", "libvpx-vp9", "libsvtav1", "ffv1", "mpeg4")
_AUDIO_SUGGESTIONS = ("aac", "libopus", "libmp3lame", "ac3", "flac", "pcm_s16le")

# The container's usual video encoder where libx264 is not the one to pick. In AVI, which stores
# no timestamps, FFmpeg reads H.264 back one frame late (its parser's guess); MPEG-4 comes back exact.
_DEFAULT_VIDEO = {"webm": "libvpx-vp9", "avi": "mpeg4"}
# The quality of encoders without a table above when no --crf is given: MPEG-4 at quantiser 3
# (FFmpeg's -q:v 3; its own default is a 200 kb/s bit rate, blurry at any size).
_DEFAULT_QUALITY = {"mpeg4": {"flags": "+qscale", "global_quality": str(3 * 118)}}  # 118: FF_QP2LAMBDA
# AVI stores no timestamps, only frame slots of 1/rate seconds in decoding order: frames reordered by
# B-frames would come back in the wrong order, so none are made, and the stream counts in frames
# (a frame of a variable-rate input goes to its nearest free slot; the muxer fills the gaps).
_CONTAINER_SETTINGS = {"avi": {"bf": "0"}}
_COUNTS_FRAMES = {"avi"}
# The container's usual audio encoder when the input's audio cannot be copied.
_DEFAULT_AUDIO = {"webm": "libopus", "ogg": "libopus", "avi": "libmp3lame"}

# Still images: one encoder and pixel format per suffix; the encoder flags do not apply to them.
IMAGE_ENCODERS = {".png": ("png", "rgb24"), ".jpg": ("mjpeg", "yuvj444p"), ".jpeg": ("mjpeg", "yuvj444p"),
                  ".bmp": ("bmp", "bgr24"), ".tif": ("tiff", "rgb24"), ".tiff": ("tiff", "rgb24"),
                  ".webp": ("libwebp", "yuv420p")}

# A decoded format that differs from one an encoder takes only in how it is stored or tagged.
_SAME_PICTURE = {"yuvj420p": "yuv420p", "yuvj422p": "yuv422p", "yuvj444p": "yuv444p", "nv12": "yuv420p",
                 "nv21": "yuv420p"}

# Audio codecs copied as they are, in containers whose muxer takes more than works: MP4-family
# muxers accept some in the header and fail at the trailer (PCM with an unnamed channel layout);
# AVI takes AAC, but its priming samples (negative timestamps) push the video one frame late.
_MP4_FAMILY = {"mp4", "mov", "ipod", "3gp", "3g2", "psp", "ismv", "f4v"}
_AUDIO_COPY = {**dict.fromkeys(_MP4_FAMILY, {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}),
               "avi": {"mp3", "mp2", "ac3", "pcm_s16le", "pcm_u8", "pcm_s24le"}}

_NATIVE_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}


# -- the plan -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class VideoPlan:
    codec: str
    pix_fmt: str
    options: dict[str, str]
    rate: Fraction
    lossless: bool  # the encoder keeps every value of the frames it is given
    time_base: Fraction | None = None  # the stream's; None: the input's


@dataclass(frozen=True)
class StreamPlan:
    """What becomes of one non-video input stream (by its index in the input)."""

    index: int
    action: Literal["copy", "encode"]
    codec: str | None = None  # the audio encoder when re-encoded
    rate: int | None = None
    layout: str | None = None


@dataclass(frozen=True)
class OutputPlan:
    container: str
    video: VideoPlan
    streams: tuple[StreamPlan, ...] = ()

    def stream(self, index: int) -> StreamPlan | None:
        return next((s for s in self.streams if s.index == index), None)


class _NamedBuffer(io.BytesIO):
    """An in-memory file with a name, from which FFmpeg guesses the container as it does for a path."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name


def container_format(target: Path | str) -> str:
    """The muxer FFmpeg picks for ``target``'s name (``out.mkv`` -> ``matroska``); ConfigError if none."""
    name = Path(target).name
    try:
        with av.open(_NamedBuffer(name), "w") as probe:
            return probe.format.name.split(",")[0]
    except (av.FFmpegError, ValueError) as exc:
        raise ConfigError(f"{target}: no container format for the suffix {Path(name).suffix or '(none)'!r} "
                          f"(use .mp4, .mkv, .mov, .webm, .avi, ...)") from exc


def plan_output(options: EncodeOptions, *, container: str, width: int, height: int, time_base: Fraction,
                rate: Fraction | None = None, source_pix_fmt: str | None = None, streams=(),
                image_suffix: str | None = None) -> OutputPlan:
    """The plan for an output of ``container`` fed ``width`` x ``height`` frames; ConfigError naming
    the flag for any choice in ``options`` that cannot be honoured. ``image_suffix``: a still image."""
    rate = rate if rate and rate < 1000 else Fraction(30)
    if image_suffix is not None:
        return OutputPlan(container, _plan_image(options, image_suffix, width, height, rate))
    video = _plan_video(options, container=container, width=width, height=height, time_base=time_base,
                        rate=rate, source_pix_fmt=source_pix_fmt)
    return OutputPlan(container, video, _plan_streams(options, container, streams))


def _plan_image(options: EncodeOptions, suffix: str, width: int, height: int, rate: Fraction) -> VideoPlan:
    for flag, value in (("--codec", options.codec), ("--crf", options.crf), ("--preset", options.preset),
                        ("--pix-fmt", options.pix_fmt), ("--audio-codec", options.audio_codec)):
        if given(value):
            raise ConfigError(f"{flag} {value}: does not apply to an image output ({suffix}, written with "
                              f"{IMAGE_ENCODERS[suffix][0]})")
    codec, pix_fmt = IMAGE_ENCODERS[suffix]
    if not _fits(pix_fmt, width, height):
        pix_fmt = "yuv444p"  # 4:2:0 needs even sizes; 4:4:4 keeps the picture exactly as it is
    return VideoPlan(codec, pix_fmt, {}, rate, lossless=av.codec.Codec(codec, "w").lossless)


# -- video --------------------------------------------------------------------------------------

def _plan_video(options: EncodeOptions, *, container: str, width: int, height: int, time_base: Fraction,
                rate: Fraction, source_pix_fmt: str | None) -> VideoPlan:
    if given(options.codec):
        candidates = [_video_encoder(options.codec)]
    else:
        preferred = _DEFAULT_VIDEO.get(container, "libx264")
        candidates = [av.codec.Codec(preferred, "w")]
        fallback = _container_default_encoder(container, "video")
        if fallback is not None and fallback.name != preferred:
            candidates.append(fallback)
    if container in _COUNTS_FRAMES:
        time_base = 1 / rate
    refusal = None
    for codec in candidates:
        settings, lossless = _quality_and_speed(codec, options, chosen=not given(options.codec))
        settings.update(_CONTAINER_SETTINGS.get(container, {}))
        for pix_fmt in _pixel_formats(codec, options.pix_fmt, source_pix_fmt, width, height,
                                      chosen=not given(options.codec)):
            refusal = _probe_video(container, codec.name, pix_fmt, settings, width, height, rate, time_base)
            if refusal is None:
                if codec.name == "libsvtav1":
                    # SVT-AV1 prints a banner of ~25 lines to stderr itself (not through FFmpeg's log).
                    os.environ.setdefault("SVT_LOG", "1")
                return VideoPlan(codec.name, pix_fmt, settings, rate, lossless, time_base)
        if not _is_container_refusal(refusal):
            break
    raise ConfigError(_video_refusal(options, candidates[-1], container, refusal))


def _encoder(name: str, kind: str, flag: str, suggestions, also: str = ""):
    """The ``kind`` ("video" or "audio") encoder called ``name``, or a one-line error naming ``flag``."""
    try:
        codec = av.codec.Codec(name, "w")
    except av.codec.codec.UnknownCodecError:
        raise ConfigError(f"{flag} {name}: this FFmpeg build has no such encoder ({kind} encoders "
                          f"here include {', '.join(_available(suggestions))}{also})") from None
    if codec.type != kind:
        article = "an" if kind == "audio" else "a"
        raise ConfigError(f"{flag} {name}: not {article} {kind} encoder (it encodes {codec.type})")
    return codec


def _video_encoder(name: str):
    return _encoder(name, "video", "--codec", _VIDEO_SUGGESTIONS)


def _container_default_encoder(container: str, kind: str):
    try:
        with av.open(io.BytesIO(), "w", format=container) as probe:
            name = probe.default_video_codec if kind == "video" else probe.default_audio_codec
        return av.codec.Codec(name, "w")
    except (av.FFmpegError, ValueError):
        return None


def _quality_and_speed(codec, options: EncodeOptions, *, chosen: bool) -> tuple[dict[str, str], bool]:
    """The encoder options for ``--crf`` and ``--preset``, and whether the result is lossless."""
    name = codec.name
    which = f"{name} (the default for this container)" if chosen else name
    known = _ENCODERS.get(name)
    crf = options.crf
    preset = options.preset if given(options.preset) else None
    if known is None:
        return _generic_quality_and_speed(codec, crf, preset, which)
    settings = dict(known.always)
    if crf == 0:
        _merge(settings, known.lossless)
    else:
        low, high = known.crf_range
        if crf is not None and not low <= crf <= high:
            raise ConfigError(f"--crf {crf}: {which} takes 0 (lossless) or {max(low, 1)} to {high}")
        settings.update(known.with_crf, crf=str(known.default_crf if crf is None else crf))
    if preset == FASTEST:
        preset = known.fastest_preset
    if preset is not None and preset not in known.presets:
        raise ConfigError(f"--preset {preset}: {which} takes {_preset_help(known)}")
    settings[known.preset_option] = preset or known.default_preset
    return settings, crf == 0


def _generic_quality_and_speed(codec, crf: int | None, preset: str | None, which: str):
    """An encoder streamrain has no table for: its own options decide what can be honoured."""
    private = {o.name for o in codec.create().supported_options.private}
    lossless_only = codec.lossless and not codec.lossy
    settings: dict[str, str] = dict(_DEFAULT_QUALITY.get(codec.name, {})) if crf is None else {}
    if lossless_only and crf not in (None, 0):
        raise ConfigError(f"--crf {crf}: {which} is always lossless; give --crf 0 or leave it out")
    if not lossless_only and crf == 0:
        raise ConfigError(f"--crf 0: {which} has no lossless mode streamrain knows; lossless encoders "
                          f"include {', '.join(_available(('libx264', 'libx265', 'libvpx-vp9', 'ffv1')))}")
    if crf not in (None, 0):
        if "crf" not in private:
            raise ConfigError(f"--crf {crf}: {which} has no constant-quality (crf) mode")
        settings["crf"] = str(crf)
    if preset == FASTEST:
        return settings, lossless_only  # no preset names streamrain knows: the encoder's own speed
    if preset is not None:
        if "preset" not in private:
            raise ConfigError(f"--preset {preset}: {which} has no speed presets")
        settings["preset"] = preset
    return settings, lossless_only


def _preset_help(known: _Encoder) -> str:
    if known.presets[0].isdigit():
        return (f"{known.presets[0]} to {known.presets[-1]} (its {known.preset_option}; higher is faster) "
                f"or {FASTEST}")
    return ", ".join(known.presets) + f" or {FASTEST}"


def _merge(settings: dict[str, str], extra: dict[str, str] | None) -> None:
    """Add ``extra``; ``*-params`` options (x265-params) are lists of key=value joined by ':'."""
    for key, value in (extra or {}).items():
        if key.endswith("-params") and settings.get(key):
            settings[key] = f"{settings[key]}:{value}"
        else:
            settings[key] = value


def _pixel_formats(codec, requested: str, source_pix_fmt: str | None, width: int, height: int, *,
                   chosen: bool) -> list[str]:
    """The pixel formats to try, best first: the one asked for, or the input's, 4:2:0, 4:4:4, RGB and
    then any other the encoder takes, each only if it takes it and it fits the frame size."""
    supported = [f.name for f in codec.video_formats or ()]
    if given(requested):
        try:
            av.VideoFormat(requested)
        except ValueError:
            raise ConfigError(f"--pix-fmt {requested}: no such pixel format (e.g. yuv420p, yuv444p, rgb24)") \
                from None
        if supported and requested not in supported:
            raise ConfigError(f"--pix-fmt {requested}: {codec.name} takes {', '.join(supported)}")
        if not _fits(requested, width, height):
            raise ConfigError(f"--pix-fmt {requested}: needs an even width and height, and the input is "
                              f"{width}x{height} (leave --pix-fmt out for one that fits)")
        return [requested]
    source = _SAME_PICTURE.get(source_pix_fmt, source_pix_fmt)
    order = [source, "yuv420p", "yuv444p", "rgb24", *supported]
    fits = [f for f in dict.fromkeys(order) if f and (not supported or f in supported) and _fits(f, width, height)]
    if not fits:
        flag = f"{codec.name}, the default for this container," if chosen else f"--codec {codec.name}:"
        raise ConfigError(f"{flag} takes only {', '.join(supported)}, which need an even width and height, "
                          f"and the input is {width}x{height}; give a --codec that takes 4:4:4 or RGB")
    return fits


def _fits(pix_fmt: str, width: int, height: int) -> bool:
    """Whether a frame of this size can be stored in ``pix_fmt`` (subsampled chroma needs even sides)."""
    fmt = av.VideoFormat(pix_fmt)
    halves_width = fmt.chroma_width(2) != 2
    halves_height = fmt.chroma_height(2) != 2
    return not (halves_width and width % 2 or halves_height and height % 2)


def _probe_video(container: str, codec: str, pix_fmt: str, settings: dict[str, str], width: int, height: int,
                 rate: Fraction, time_base: Fraction) -> str | None:
    """None if ``container`` takes ``codec`` set up so (encoder opened, header written), else why not."""
    def add(target):
        stream = target.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.time_base = stream.codec_context.time_base = time_base
        stream.options = dict(settings)
        return stream
    return _probe(container, add)


_CONTAINER_REFUSAL = "container:"
# Muxers that write their header to a network peer, not to a file: only the encoder can be checked.
_NEEDS_PEER = {"rtsp", "rtp"}


def _probe(container: str, add_stream) -> str | None:
    try:
        probe = None if container in _NEEDS_PEER else av.open(io.BytesIO(), "w", format=container)
    except (av.FFmpegError, ValueError):
        probe = None
    if probe is None:
        with av.open(io.BytesIO(), "w", format="matroska") as scratch:
            stream = add_stream(scratch)
            try:
                stream.codec_context.open()
            except (av.FFmpegError, ValueError) as exc:
                return _reason(exc)
        return None
    try:
        try:
            stream = add_stream(probe)
        except ValueError as exc:  # PyAV asks the muxer first: "'webm' format does not support 'libx264'"
            return _CONTAINER_REFUSAL + _reason(exc)
        try:
            stream.codec_context.open()
        except (av.FFmpegError, ValueError) as exc:
            return _reason(exc)
        try:
            probe.start_encoding()
        except (av.FFmpegError, ValueError, NotImplementedError) as exc:
            return _CONTAINER_REFUSAL + _reason(exc)
        return None
    finally:
        try:
            probe.close()
        except Exception:  # noqa: BLE001 - a muxer closed with no packet may complain; the answer is known
            pass


def _is_container_refusal(refusal: str | None) -> bool:
    return bool(refusal) and refusal.startswith(_CONTAINER_REFUSAL)


def _video_refusal(options: EncodeOptions, codec, container: str, refusal: str | None) -> str:
    if _is_container_refusal(refusal):
        takes = _container_takes(container, _VIDEO_SUGGESTIONS)
        why = f"it takes {', '.join(takes)}" if takes else refusal[len(_CONTAINER_REFUSAL):]
        if given(options.codec):
            return f"--codec {codec.name}: the {container} container does not carry it ({why})"
        return f"the {container} container carries none of the video encoders streamrain picks ({why}); give --codec"
    asked = [f"{flag} {value}" for flag, value in (("--codec", options.codec), ("--crf", options.crf),
                                                   ("--preset", options.preset), ("--pix-fmt", options.pix_fmt))
             if given(value)]
    return f"{' '.join(asked) or codec.name}: the {codec.name} encoder refuses these settings ({refusal})"


def _container_takes(container: str, encoders) -> list[str]:
    try:
        with av.open(io.BytesIO(), "w", format=container) as probe:
            supported = probe.supported_codecs
    except (av.FFmpegError, ValueError):
        return []
    return [name for name in _available(encoders) if name in supported]


def _available(encoders) -> list[str]:
    return [name for name in encoders if name in av.codecs_available]


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(": '")[0].strip() or type(exc).__name__


# -- audio and the other streams ----------------------------------------------------------------

def _plan_streams(options: EncodeOptions, container: str, streams) -> tuple[StreamPlan, ...]:
    if not options.copy_audio:
        if given(options.audio_codec):
            raise ConfigError(f"--audio-codec {options.audio_codec}: contradicts --no-audio")
        return ()
    plans = []
    for stream in streams:
        if stream.type == "audio":
            plan = _plan_audio(options.audio_codec, container, stream)
        elif copy_works(container, stream):
            plan = StreamPlan(stream.index, "copy")
        else:
            log.warning("dropping %s stream %d: the %s container cannot carry it", stream.type, stream.index,
                        container)
            plan = None
        if plan is not None:
            plans.append(plan)
    if given(options.audio_codec) and not any(s.type == "audio" for s in streams):
        log.info("--audio-codec %s: the input has no audio", options.audio_codec)
    return tuple(plans)


def _plan_audio(choice: str, container: str, stream) -> StreamPlan | None:
    source = stream.codec_context.name
    if choice in (AUTO, "copy") and copy_works(container, stream):
        return StreamPlan(stream.index, "copy")
    encoder = _audio_encoder(choice) if choice not in (AUTO, "copy") else _default_audio_encoder(container)
    if choice == "copy":
        hint = f"; leave --audio-codec out to re-encode it to {encoder.name}" if encoder else ""
        raise ConfigError(f"--audio-codec copy: the {container} container cannot carry the input's {source} "
                          f"audio as it is{hint}")
    plan = refusal = None
    if encoder is not None:
        plan, refusal = _audio_encoding(encoder, container, stream)
    if plan is not None:
        if choice == AUTO:
            log.info("%s cannot carry %s as is: re-encoding it to %s", container, source, encoder.name)
        return plan
    if choice != AUTO:
        takes = _container_takes(container, _AUDIO_SUGGESTIONS)
        reason = f"; it takes {', '.join(takes)}" if takes else f" ({refusal})"
        raise ConfigError(f"--audio-codec {choice}: the {container} container does not carry {encoder.name}"
                          f"{reason}" if _is_container_refusal(refusal) else
                          f"--audio-codec {choice}: the {encoder.name} encoder refuses the input's audio "
                          f"({refusal})")
    log.warning("dropping audio stream %d (%s): the %s container carries neither it nor an audio codec "
                "streamrain can encode (give --audio-codec, or --no-audio)", stream.index, source, container)
    return None


def _audio_encoder(name: str):
    return _encoder(name, "audio", "--audio-codec", _AUDIO_SUGGESTIONS, "; or copy, auto")


def _default_audio_encoder(container: str):
    name = _DEFAULT_AUDIO.get(container)
    if name is not None and name in av.codecs_available:
        return av.codec.Codec(name, "w")
    if container in _DEFAULT_AUDIO or container in _MP4_FAMILY or container == "matroska":
        return av.codec.Codec("aac", "w")
    return _container_default_encoder(container, "audio") or av.codec.Codec("aac", "w")


def _audio_encoding(encoder, container: str, stream) -> tuple[StreamPlan | None, str | None]:
    """A re-encoding of ``stream`` with ``encoder`` that ``container`` takes, or None and why not."""
    cc = stream.codec_context
    rate = _audio_rate(encoder, cc.sample_rate or 48000)
    refusal = None
    for layout in dict.fromkeys((_named_layout(cc.layout), "stereo")):
        def add(target, layout=layout):
            return target.add_stream(encoder.name, rate=rate, layout=layout)
        refusal = _probe(container, add)
        if refusal is None:
            return StreamPlan(stream.index, "encode", encoder.name, rate, layout), None
        if _is_container_refusal(refusal):
            break
    return None, refusal


def _audio_rate(encoder, source_rate: int) -> int:
    """The input's sample rate if the encoder takes it, else the lowest it takes above, else its highest."""
    rates = sorted(encoder.audio_rates or ())
    if not rates or source_rate in rates:
        return source_rate
    return next((r for r in rates if r > source_rate), rates[-1])


def _named_layout(layout) -> str:
    """A layout encoders accept: 'N channels' (no channel mask, e.g. PCM in MKV) is not one."""
    if layout.name.endswith("channels"):
        return _NATIVE_LAYOUTS.get(layout.nb_channels, "stereo")
    return layout.name


def copy_works(container: str, stream) -> bool:
    """Whether ``container`` takes ``stream``'s packets as they are (checked by writing a header)."""
    if stream.type == "audio" and stream.codec_context.name not in _AUDIO_COPY.get(container, {stream.codec_context.name}):
        return False
    try:
        with av.open(io.BytesIO(), "w", format=container) as probe:
            probe.add_stream_from_template(stream)
            probe.start_encoding()
        return True
    except (av.FFmpegError, ValueError, NotImplementedError) as exc:
        log.debug("%s cannot carry %s as is (%s)", container, stream.codec_context.name, exc)
        return False
