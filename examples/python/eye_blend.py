"""image.blend written in Python, for pipelines/eye_contact_python.yaml: the re-rendered eye patch
composited into the frame through its mask, with the C++ stage's integer formula."""
import math

import numpy as np


def lround(x):  # C's lround: halves away from zero (Python's round() goes to even)
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


class Blend:
    reads = {"frame": "image"}
    optional_reads = {"generated": "image", "generated_mask": "image", "generated_roi": "rects"}
    writes = {"frame": "image", "input_frame": "image"}

    def process(self, packet):
        frame = packet["frame"]
        packet["input_frame"] = frame
        patch, mask = packet.get("generated"), packet.get("generated_mask")
        roi = packet.get("generated_roi")
        if patch is None or mask is None or not roi or not math.isfinite(roi[0].x + roi[0].y):
            return packet
        ox, oy = lround(roi[0].x), lround(roi[0].y)
        x0, y0 = max(0, ox), max(0, oy)
        x1 = min(frame.shape[1], ox + patch.shape[1])
        y1 = min(frame.shape[0], oy + patch.shape[0])
        if x0 >= x1 or y0 >= y1:
            return packet
        a = mask[y0 - oy:y1 - oy, x0 - ox:x1 - ox, None].astype(np.uint32)
        g = patch[y0 - oy:y1 - oy, x0 - ox:x1 - ox].astype(np.uint32)
        out = frame.copy()
        f = out[y0:y1, x0:x1].astype(np.uint32)
        out[y0:y1, x0:x1] = (f * (255 - a) + g * a + 127) // 255  # exact at a = 0 and 255
        packet["frame"] = out
        return packet
