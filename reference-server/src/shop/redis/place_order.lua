-- place_order: a checkout's whole decision and every write it makes, in one
-- atomic step (docs/SHOP_API.md, "Checkout, step by step"). Every check runs
-- before the first write, so a refusal or an error writes nothing.
--
-- KEYS[1] the cart (hash sku -> qty)      KEYS[2] the key's record (hash)
-- KEYS[3] stock left (hash sku -> units)  KEYS[4] orders (hash id -> 201 body)
-- KEYS[5] the order id counter            KEYS[5+i] line i's product (hash)
-- ARGV[1] '1' if the request has an Idempotency-Key, else '0'
-- ARGV[2] cart id    ARGV[3] the 400 body (empty cart)
-- ARGV[4] the 201 body after '{"order_id":' (rendered by the caller for
--         exactly the lines below, so the recorded answer is serde's bytes)
-- ARGV[5] n lines, then per line i (base b = 5 + 5(i-1)): ARGV[b+1] sku,
--         ARGV[b+2] qty, ARGV[b+3] unit price, ARGV[b+4] doorbuster 0/1,
--         ARGV[b+5] the 409 body naming that sku. Lines in sku order.
--
-- Returns {'replay', status, body}, {'reused', first_cart_id},
-- {'changed'} (the cart is not the one priced: reprice and call again), or
-- {'done', status, body} (decided now, recorded under the key if any).
local has_key = ARGV[1] == '1'
if has_key then
    local rec = redis.call('HMGET', KEYS[2], 'cart_id', 'status', 'body')
    if rec[1] then
        if rec[1] ~= ARGV[2] then
            return {'reused', rec[1]}
        end
        return {'replay', rec[2], rec[3]}
    end
end

local n = tonumber(ARGV[5])
if redis.call('HLEN', KEYS[1]) ~= n then
    return {'changed'}
end
for i = 1, n do
    local b = 5 + 5 * (i - 1)
    if redis.call('HGET', KEYS[1], ARGV[b + 1]) ~= ARGV[b + 2] then
        return {'changed'}
    end
    local p = redis.call('HMGET', KEYS[5 + i], 'price_cents', 'doorbuster')
    if p[1] ~= ARGV[b + 3] or p[2] ~= ARGV[b + 4] then
        return {'changed'}
    end
end

local function answer(status, body)
    if has_key then
        redis.call('HSET', KEYS[2], 'cart_id', ARGV[2], 'status', status, 'body', body)
    end
    return {'done', status, body}
end

if n == 0 then
    return answer('400', ARGV[3])
end
for i = 1, n do
    local b = 5 + 5 * (i - 1)
    local left = tonumber(redis.call('HGET', KEYS[3], ARGV[b + 1]))
    if left == nil then
        return redis.error_reply('stock of ' .. ARGV[b + 1] .. ' is missing from ' .. KEYS[3])
    end
    if left < tonumber(ARGV[b + 2]) then
        return answer('409', ARGV[b + 5])
    end
end

for i = 1, n do
    local b = 5 + 5 * (i - 1)
    redis.call('HINCRBY', KEYS[3], ARGV[b + 1], -tonumber(ARGV[b + 2]))
end
local id = redis.call('INCR', KEYS[5])
local body = '{"order_id":' .. tostring(id) .. ARGV[4]
redis.call('HSET', KEYS[4], id, body)
redis.call('DEL', KEYS[1])
return answer('201', body)
