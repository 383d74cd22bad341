"""Python stages for examples/python/blur.yaml: draw a frame, blur it, measure it."""
import cv2
import numpy as np


class Canvas:
    """Draws a 640x480 frame whose bright square moves with the packet's number."""
    reads = {"value": "int"}
    writes = {"image": "image"}

    def process(self, packet):
        image = np.zeros((480, 640, 3), np.uint8)
        x = packet["value"] * 5 % 560
        image[200:280, x:x + 80] = 255
        packet["image"] = image
        return packet


class Blur:
    """Blurs the image (OpenCV releases the GIL, so consumers: 2 uses two cores)."""
    reads = {"image": "image"}
    writes = {"blurred": "image", "brightness": "number"}
    params = {"size": (15, "kernel width and height in pixels, odd")}  # self.size; --set blur.size=9

    def process(self, packet):
        blurred = cv2.GaussianBlur(packet["image"], (self.size, self.size), 0)
        packet["blurred"] = blurred
        packet["brightness"] = float(blurred.mean())
        return packet
