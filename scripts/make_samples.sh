#!/usr/bin/env bash
# Regenerates proxy/media/samples/: small, seamlessly loopable H.264 + AAC MPEG-TS channels.
#
# Run once by a human; the output is committed (CI never runs ffmpeg to make them).
#
# Why the numbers:
# - 8 s loop = 200 video frames @ 25 fps = 375 AAC frames (1024 samples @ 48 kHz), so both streams end
#   exactly on a frame boundary and the library can repeat the loop with one timestamp offset.
# - keyint=min-keyint=25, scenecut=0, closed GOP: one IDR every second, so any 1 s GOP decodes alone and
#   HLS segments / live-TS joins can be cut on any second.
# - The audio is encoded from 24 s of a periodic signal and the MIDDLE 8 s of AAC packets are kept:
#   that drops the encoder priming frame and the flush frame, and the MDCT overlap at the loop seam
#   matches what the decoder expects because the signal repeats every second.
# - B-frames only where a channel asks for them (mandelbrot: 2, as broadcasters use), with
#   direct=spatial: temporal direct prediction reads a co-located picture, and a decoder that starts
#   after a seek (ffmpeg -ss on a recording) prints "co located POCs unavailable" for it.
# - One ATSC-like channel (MPEG-2 video + AC-3 audio): what `hls.mode: auto` must send to the
#   transcoder (browsers cannot decode it) and what remux must still package for native players.
#   8 s = 250 AC-3 frames of 1536 samples, so it loops exactly as AAC does.
# - The video is encoded into an intermediate MPEG-TS (not MKV/MP4) so x264 repeats SPS/PPS in-band
#   before every IDR: a segment cut at any keyframe carries its own decoder configuration.
set -euo pipefail

cd "$(dirname "$0")/.."
OUT=proxy/media/samples
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

FONT=/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf
SIZE=320x180
FPS=25
LOOP=8
FRAMES=$((FPS * LOOP))

# name | lavfi video source | left Hz | right Hz | codecs (video+audio, B-frames) | description
CHANNELS=(
  "testcard|testsrc2=size=${SIZE}:rate=${FPS}|440|660|h264+aac|ffmpeg testsrc2 pattern, 440/660 Hz tones"
  "colorbars|smptehdbars=size=${SIZE}:rate=${FPS}|1000|1000|h264+aac|SMPTE HD colour bars, 1 kHz line-up tone"
  "mandelbrot|mandelbrot=size=${SIZE}:rate=${FPS}|330|495|h264b+aac|Mandelbrot zoom (B-frames), 330/495 Hz tones"
  "life|life=size=${SIZE}:rate=${FPS}:mold=10:ratio=0.4:life_color=#00cc66:death_color=#802020|523|785|h264+aac|Game of Life, 523/785 Hz tones"
  "atsc|testsrc=size=${SIZE}:rate=${FPS}|600|900|mpeg2+ac3|ffmpeg testsrc, MPEG-2 video + AC-3 audio (ATSC-like), 600/900 Hz tones"
)

rm -f "$OUT"/*.ts "$OUT"/samples.json
mkdir -p "$OUT"

entries=()
index=0
for spec in "${CHANNELS[@]}"; do
  IFS='|' read -r name source left right codecs description <<<"$spec"
  index=$((index + 1))
  label="drawtext=fontfile=${FONT}:text='${index} ${name} %{eif\\:n\\:d\\:3}':x=6:y=6:fontsize=16"
  label="${label}:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=3"

  case "$codecs" in
    mpeg2+ac3)
      ffmpeg -v error -y -f lavfi -i "${source},${label}" -frames:v "$FRAMES" \
        -c:v mpeg2video -pix_fmt yuv420p -b:v 250k -maxrate 300k -bufsize 300k \
        -g "$FPS" -bf 2 -sc_threshold 1000000000 -flags +cgop -f mpegts "$TMP/video.ts"
      acodec=(-c:a ac3 -b:a 96k) afmt=ac3 vcodec=mpeg2video acodec_name=ac3 aframes_loop=$((LOOP * 48000 / 1536))
      ;;
    *)
      bframes=0
      [[ "$codecs" == h264b+aac ]] && bframes=2
      ffmpeg -v error -y -f lavfi -i "${source},${label}" -frames:v "$FRAMES" \
        -c:v libx264 -preset veryslow -profile:v main -pix_fmt yuv420p \
        -b:v 200k -maxrate 250k -bufsize 250k \
        -g "$FPS" -keyint_min "$FPS" -sc_threshold 0 -flags +cgop \
        -x264-params "keyint=${FPS}:min-keyint=${FPS}:scenecut=0:open-gop=0:repeat-headers=1:bframes=${bframes}:direct=spatial:b-pyramid=none" \
        -f mpegts "$TMP/video.ts"
      acodec=(-c:a aac -b:a 64k) afmt=adts vcodec=h264 acodec_name=aac aframes_loop=$((LOOP * 48000 / 1024))
      ;;
  esac

  ffmpeg -v error -y -f lavfi \
    -i "aevalsrc=0.25*sin(2*PI*${left}*t)|0.25*sin(2*PI*${right}*t):s=48000:d=$((LOOP * 3))" \
    "${acodec[@]}" -f "$afmt" "$TMP/audio_long.$afmt"
  ffmpeg -v error -y -i "$TMP/audio_long.$afmt" -ss "$LOOP" -t "$LOOP" -c:a copy -f "$afmt" "$TMP/audio.$afmt"

  ffmpeg -v error -y -i "$TMP/video.ts" -i "$TMP/audio.$afmt" -map 0:v -map 1:a -c copy \
    -metadata service_name="$name" -metadata service_provider="nextpvr-hls-proxy" \
    -f mpegts "$OUT/$name.ts"

  vframes=$(ffprobe -v error -select_streams v -count_packets -show_entries stream=nb_read_packets \
    -of default=nw=1:nk=1 "$OUT/$name.ts" | sed -n 1p | tr -dc 0-9)
  aframes=$(ffprobe -v error -select_streams a -count_frames -show_entries stream=nb_read_frames \
    -of default=nw=1:nk=1 "$OUT/$name.ts" | sed -n 1p | tr -dc 0-9)
  if [[ "$vframes" != "$FRAMES" || "$aframes" != "$aframes_loop" ]]; then
    echo "$name: expected $FRAMES video / $aframes_loop audio frames, got $vframes / $aframes" >&2
    exit 1
  fi
  bytes=$(stat -c %s "$OUT/$name.ts")
  sha=$(sha256sum "$OUT/$name.ts" | cut -d' ' -f1)
  entries+=("    {\"name\": \"$name\", \"file\": \"$name.ts\", \"description\": \"$description\", \
\"audio_hz\": [$left, $right], \"video_codec\": \"$vcodec\", \"audio_codec\": \"$acodec_name\", \
\"b_frames\": $( [[ "$codecs" == h264+aac ]] && echo false || echo true ), \"audio_frames\": $aframes_loop, \"bytes\": $bytes, \"sha256\": \"$sha\"}")
done

{
  echo "{"
  echo "  \"generator\": \"scripts/make_samples.sh\","
  echo "  \"loop_seconds\": $LOOP,"
  echo "  \"gop_seconds\": 1,"
  echo "  \"fps\": $FPS,"
  echo "  \"video\": \"H.264 Main (one MPEG-2), ${SIZE}, yuv420p, ~200 kbit/s, keyframe every ${FPS} frames, closed GOP\","
  echo "  \"audio\": \"AAC-LC stereo 48 kHz, 64 kbit/s (AC-3 96 kbit/s with MPEG-2)\","
  echo "  \"samples\": ["
  last=$((${#entries[@]} - 1))
  for i in "${!entries[@]}"; do
    if [[ $i -lt $last ]]; then echo "${entries[$i]},"; else echo "${entries[$i]}"; fi
  done
  echo "  ]"
  echo "}"
} >"$OUT/samples.json"

du -ch "$OUT"/* | tail -1
