# A stage written in Python, for the installed-package checks (scripts/check_package.sh and
# scripts/check_deb.sh): doubles the synthetic source's "value".
class Double:
    reads = {"value": "int"}
    writes = {"double": "int"}

    def process(self, packet):
        packet["double"] = 2 * packet["value"]
        return packet
