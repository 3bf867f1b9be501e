-- wrk script: POST /predict with multipart bodies (field "file") built from the image files
-- given after `--`, cycling through them. Each wrk thread runs its own copy.
local bodies = {}
local boundary = "skinlesion-load-bench"

function init(args)
  for _, path in ipairs(args) do
    local f = assert(io.open(path, "rb"))
    local data = f:read("*all")
    f:close()
    bodies[#bodies + 1] = "--" .. boundary .. "\r\n"
      .. 'Content-Disposition: form-data; name="file"; filename="lesion.jpg"\r\n'
      .. "Content-Type: image/jpeg\r\n\r\n" .. data .. "\r\n--" .. boundary .. "--\r\n"
  end
  assert(#bodies > 0, "no images given after --")
end

local i = 0
function request()
  i = i % #bodies + 1
  return wrk.format("POST", "/predict",
    { ["Content-Type"] = "multipart/form-data; boundary=" .. boundary }, bodies[i])
end
