"""Seeds 32 livesession sessions for the wrk benchmarks, each with a saved row (the read path
reads an existing session), and writes their cookies and CSRF tokens into a wrk script.

    python3 bench/seed_sessions.py ADDR OUT_PREFIX

writes OUT_PREFIX-cookie (the first session's cookie, for GET) and OUT_PREFIX-post.lua
(bench/post.lua with the 32 sessions, for POST).
"""
import http.cookiejar
import re
import sys
import urllib.parse
import urllib.request

addr, out = sys.argv[1], sys.argv[2]
sessions = []
for i in range(32):
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"http://{addr}/settings").read().decode()
    token = re.search(r'name="_csrf" value="([^"]*)"', page).group(1)
    body = urllib.parse.urlencode({"_csrf": token, "username": f"bench {i}", "theme": "dark"}).encode()
    opener.open(f"http://{addr}/settings", body)
    cookie = [f"{c.name}={c.value}" for c in jar][0]
    sessions.append((cookie, token))
with open(f"{out}-cookie", "w") as f:
    f.write(sessions[0][0])
lua = open("bench/post.lua").read()
table = ",\n".join('{"%s", "%s"}' % s for s in sessions)
with open(f"{out}-post.lua", "w") as f:
    f.write("SESSIONS = {\n" + table + "\n}\n" + lua)
