#!/bin/sh
# The seed's way, reproduced: Sentinel's client-reconfig-script calls the AWS CLI
# once per route table. Sentinel runs it on every sentinel, once per failover:
#   <master-name> <role> <state> <from-ip> <from-port> <to-ip> <to-port>
# BENCH_ENV (next to this script) holds the endpoint, tables and IP→ENI map.
. "$(dirname "$0")/bench.env"
TO_IP=$6
ENI=$(grep "^$TO_IP " "$(dirname "$0")/nodes.map" | cut -d' ' -f2)
for RTB in $TABLES; do
  "$AWS" ec2 replace-route --endpoint-url "$ENDPOINT" --region us-east-1 \
    --route-table-id "$RTB" --destination-cidr-block 172.16.0.10/32 \
    --network-interface-id "$ENI" >/dev/null 2>&1
done
exit 0
