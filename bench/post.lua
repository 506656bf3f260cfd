-- POST /settings for many sessions, round robin, a new username every request.
-- SESSIONS is filled in by bench/run: { {cookie, csrf}, ... }.
local counter = 0
request = function()
  counter = counter + 1
  local s = SESSIONS[(counter % #SESSIONS) + 1]
  local body = "_csrf=" .. s[2] .. "&username=u" .. counter .. "&theme=dark"
  return wrk.format("POST", "/settings", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Cookie"] = s[1],
  }, body)
end
