"""Zips function folders of a sam build as `sam deploy` would (each file with its mode, so
`bootstrap` stays executable), but at deflate level 1: `<folder>.zip` beside each folder.

usage: python sam_zip.py <folder> ...
"""
import os
import sys
import zipfile

for folder in sys.argv[1:]:
    with zipfile.ZipFile(f"{folder}.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as out:
        for root, _, files in sorted(os.walk(folder)):
            for name in sorted(files):
                path = os.path.join(root, name)
                info = zipfile.ZipInfo.from_file(path, os.path.relpath(path, folder))
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(path, "rb") as f:
                    out.writestr(info, f.read(), compresslevel=1)
