"""The firmware folder model: scatter layout, image files, checksum.ini, validation.

Everything romkit does after download works on one SP Flash Tool folder (`target_bin/`):
`scatter` says where each partition lives, `images` says which file feeds which partition,
`checksum` reproduces SP Flash Tool's checksum.ini check and `package.Firmware` ties them
together and reports what SP Flash Tool would have refused.
"""
