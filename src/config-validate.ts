// @ts-nocheck: ajv's code, untyped; src/config.ts gives it its type.
// Written by scripts/config-validator.ts (npm run config:validator) from ConfigFileSchema (src/config-schema.ts):
// ajv's standalone code of it. Do not edit; test/config-validate.test.ts fails when it is stale.
"use strict";
export const validate = validate10;
export default validate10;
const schema11 = {"additionalProperties":false,"type":"object","required":["redisUrl","redisKeyPrefix","regions"],"properties":{"redisUrl":{"pattern":"^rediss?://","type":"string"},"redisKeyPrefix":{"pattern":"^[A-Za-z0-9_.:-]{1,64}$","type":"string"},"regions":{"minItems":1,"maxItems":32,"type":"array","items":{"additionalProperties":false,"type":"object","required":["id","port","databaseUrl"],"properties":{"id":{"pattern":"^(?!constructor$)[a-z][a-z0-9-]{0,62}$","type":"string"},"port":{"minimum":1,"maximum":65535,"type":"integer"},"databaseUrl":{"pattern":"^postgres(ql)?://","type":"string"},"host":{"minLength":1,"type":"string"},"publicUrl":{"pattern":"^https?://","type":"string"},"redisUrl":{"pattern":"^rediss?://","type":"string"},"operatorPort":{"minimum":1,"maximum":65535,"type":"integer"}}}},"metadataAllowedHosts":{"type":"array","items":{"pattern":"^[^\\s/]+:[0-9]{1,5}$","type":"string"}},"metadataRefreshIntervalSeconds":{"minimum":1,"type":"integer"},"adoptAfterSeconds":{"minimum":1,"maximum":86400,"type":"integer"},"maxCredentialsPerOrg":{"minimum":1,"maximum":100000,"type":"integer"},"metadataFetchConcurrency":{"additionalProperties":false,"type":"object","properties":{"perOrg":{"minimum":1,"maximum":100,"type":"integer"},"perRegion":{"minimum":1,"maximum":1000,"type":"integer"},"waitMs":{"minimum":0,"maximum":60000,"type":"integer"}}},"maxClockSkewMs":{"minimum":1,"maximum":86400000,"type":"integer"},"samlClockSkewSeconds":{"minimum":0,"maximum":600,"type":"integer"},"streamMaxLength":{"minimum":100,"type":"integer"},"streamTrimIntervalMs":{"minimum":500,"maximum":600000,"type":"integer"},"replicationPacks":{"type":"boolean"},"ackSignatures":{"anyOf":[{"const":"off","type":"string"},{"const":"sign","type":"string"},{"const":"require","type":"string"}]},"writeTransactionTimeoutMs":{"minimum":1000,"maximum":20000,"type":"integer"},"republishAfterMs":{"minimum":1000,"maximum":3600000,"type":"integer"},"claimIntervalMs":{"minimum":100,"maximum":60000,"type":"integer"},"ackTtlSeconds":{"minimum":60,"type":"integer"},"tombstoneCollection":{"additionalProperties":false,"type":"object","properties":{"enabled":{"type":"boolean"},"intervalMs":{"minimum":100,"maximum":300000,"type":"integer"},"minAgeMs":{"minimum":0,"maximum":2592000000,"type":"integer"},"batchSize":{"minimum":1,"maximum":10000,"type":"integer"}}},"admission":{"additionalProperties":false,"type":"object","properties":{"writes":{"additionalProperties":false,"type":"object","properties":{"concurrency":{"minimum":1,"maximum":64,"type":"integer"},"queue":{"minimum":0,"maximum":100000,"type":"integer"},"queueWaitMs":{"minimum":1,"maximum":120000,"type":"integer"}}},"reads":{"additionalProperties":false,"type":"object","properties":{"concurrency":{"minimum":1,"maximum":64,"type":"integer"},"queue":{"minimum":0,"maximum":100000,"type":"integer"},"queueWaitMs":{"minimum":1,"maximum":120000,"type":"integer"}}},"databaseSlots":{"minimum":1,"maximum":64,"type":"integer"},"retryAfterSeconds":{"minimum":1,"maximum":3600,"type":"integer"}}}}};
const func2 = Object.prototype.hasOwnProperty;
const func3 = require("ajv/dist/runtime/ucs2length").default;
const pattern0 = new RegExp("^rediss?://", "u");
const pattern1 = new RegExp("^[A-Za-z0-9_.:-]{1,64}$", "u");
const pattern2 = new RegExp("^(?!constructor$)[a-z][a-z0-9-]{0,62}$", "u");
const pattern3 = new RegExp("^postgres(ql)?://", "u");
const pattern4 = new RegExp("^https?://", "u");
const pattern6 = new RegExp("^[^\\s/]+:[0-9]{1,5}$", "u");

function validate10(data, {instancePath="", parentData, parentDataProperty, rootData=data}={}){
let vErrors = null;
let errors = 0;
if(data && typeof data == "object" && !Array.isArray(data)){
if(data.redisUrl === undefined){
const err0 = {instancePath,schemaPath:"#/required",keyword:"required",params:{missingProperty: "redisUrl"},message:"must have required property '"+"redisUrl"+"'",schema:schema11.required,parentSchema:schema11,data};
if(vErrors === null){
vErrors = [err0];
}
else {
vErrors.push(err0);
}
errors++;
}
if(data.redisKeyPrefix === undefined){
const err1 = {instancePath,schemaPath:"#/required",keyword:"required",params:{missingProperty: "redisKeyPrefix"},message:"must have required property '"+"redisKeyPrefix"+"'",schema:schema11.required,parentSchema:schema11,data};
if(vErrors === null){
vErrors = [err1];
}
else {
vErrors.push(err1);
}
errors++;
}
if(data.regions === undefined){
const err2 = {instancePath,schemaPath:"#/required",keyword:"required",params:{missingProperty: "regions"},message:"must have required property '"+"regions"+"'",schema:schema11.required,parentSchema:schema11,data};
if(vErrors === null){
vErrors = [err2];
}
else {
vErrors.push(err2);
}
errors++;
}
for(const key0 in data){
if(!(func2.call(schema11.properties, key0))){
const err3 = {instancePath,schemaPath:"#/additionalProperties",keyword:"additionalProperties",params:{additionalProperty: key0},message:"must NOT have additional properties",schema:false,parentSchema:schema11,data};
if(vErrors === null){
vErrors = [err3];
}
else {
vErrors.push(err3);
}
errors++;
}
}
if(data.redisUrl !== undefined){
let data0 = data.redisUrl;
if(typeof data0 === "string"){
if(!pattern0.test(data0)){
const err4 = {instancePath:instancePath+"/redisUrl",schemaPath:"#/properties/redisUrl/pattern",keyword:"pattern",params:{pattern: "^rediss?://"},message:"must match pattern \""+"^rediss?://"+"\"",schema:"^rediss?://",parentSchema:schema11.properties.redisUrl,data:data0};
if(vErrors === null){
vErrors = [err4];
}
else {
vErrors.push(err4);
}
errors++;
}
}
else {
const err5 = {instancePath:instancePath+"/redisUrl",schemaPath:"#/properties/redisUrl/type",keyword:"type",params:{type: "string"},message:"must be string",schema:schema11.properties.redisUrl.type,parentSchema:schema11.properties.redisUrl,data:data0};
if(vErrors === null){
vErrors = [err5];
}
else {
vErrors.push(err5);
}
errors++;
}
}
if(data.redisKeyPrefix !== undefined){
let data1 = data.redisKeyPrefix;
if(typeof data1 === "string"){
if(!pattern1.test(data1)){
const err6 = {instancePath:instancePath+"/redisKeyPrefix",schemaPath:"#/properties/redisKeyPrefix/pattern",keyword:"pattern",params:{pattern: "^[A-Za-z0-9_.:-]{1,64}$"},message:"must match pattern \""+"^[A-Za-z0-9_.:-]{1,64}$"+"\"",schema:"^[A-Za-z0-9_.:-]{1,64}$",parentSchema:schema11.properties.redisKeyPrefix,data:data1};
if(vErrors === null){
vErrors = [err6];
}
else {
vErrors.push(err6);
}
errors++;
}
}
else {
const err7 = {instancePath:instancePath+"/redisKeyPrefix",schemaPath:"#/properties/redisKeyPrefix/type",keyword:"type",params:{type: "string"},message:"must be string",schema:schema11.properties.redisKeyPrefix.type,parentSchema:schema11.properties.redisKeyPrefix,data:data1};
if(vErrors === null){
vErrors = [err7];
}
else {
vErrors.push(err7);
}
errors++;
}
}
if(data.regions !== undefined){
let data2 = data.regions;
if(Array.isArray(data2)){
if(data2.length > 32){
const err8 = {instancePath:instancePath+"/regions",schemaPath:"#/properties/regions/maxItems",keyword:"maxItems",params:{limit: 32},message:"must NOT have more than 32 items",schema:32,parentSchema:schema11.properties.regions,data:data2};
if(vErrors === null){
vErrors = [err8];
}
else {
vErrors.push(err8);
}
errors++;
}
if(data2.length < 1){
const err9 = {instancePath:instancePath+"/regions",schemaPath:"#/properties/regions/minItems",keyword:"minItems",params:{limit: 1},message:"must NOT have fewer than 1 items",schema:1,parentSchema:schema11.properties.regions,data:data2};
if(vErrors === null){
vErrors = [err9];
}
else {
vErrors.push(err9);
}
errors++;
}
const len0 = data2.length;
for(let i0=0; i0<len0; i0++){
let data3 = data2[i0];
if(data3 && typeof data3 == "object" && !Array.isArray(data3)){
if(data3.id === undefined){
const err10 = {instancePath:instancePath+"/regions/" + i0,schemaPath:"#/properties/regions/items/required",keyword:"required",params:{missingProperty: "id"},message:"must have required property '"+"id"+"'",schema:schema11.properties.regions.items.required,parentSchema:schema11.properties.regions.items,data:data3};
if(vErrors === null){
vErrors = [err10];
}
else {
vErrors.push(err10);
}
errors++;
}
if(data3.port === undefined){
const err11 = {instancePath:instancePath+"/regions/" + i0,schemaPath:"#/properties/regions/items/required",keyword:"required",params:{missingProperty: "port"},message:"must have required property '"+"port"+"'",schema:schema11.properties.regions.items.required,parentSchema:schema11.properties.regions.items,data:data3};
if(vErrors === null){
vErrors = [err11];
}
else {
vErrors.push(err11);
}
errors++;
}
if(data3.databaseUrl === undefined){
const err12 = {instancePath:instancePath+"/regions/" + i0,schemaPath:"#/properties/regions/items/required",keyword:"required",params:{missingProperty: "databaseUrl"},message:"must have required property '"+"databaseUrl"+"'",schema:schema11.properties.regions.items.required,parentSchema:schema11.properties.regions.items,data:data3};
if(vErrors === null){
vErrors = [err12];
}
else {
vErrors.push(err12);
}
errors++;
}
for(const key1 in data3){
if(!(((((((key1 === "id") || (key1 === "port")) || (key1 === "databaseUrl")) || (key1 === "host")) || (key1 === "publicUrl")) || (key1 === "redisUrl")) || (key1 === "operatorPort"))){
const err13 = {instancePath:instancePath+"/regions/" + i0,schemaPath:"#/properties/regions/items/additionalProperties",keyword:"additionalProperties",params:{additionalProperty: key1},message:"must NOT have additional properties",schema:false,parentSchema:schema11.properties.regions.items,data:data3};
if(vErrors === null){
vErrors = [err13];
}
else {
vErrors.push(err13);
}
errors++;
}
}
if(data3.id !== undefined){
let data4 = data3.id;
if(typeof data4 === "string"){
if(!pattern2.test(data4)){
const err14 = {instancePath:instancePath+"/regions/" + i0+"/id",schemaPath:"#/properties/regions/items/properties/id/pattern",keyword:"pattern",params:{pattern: "^(?!constructor$)[a-z][a-z0-9-]{0,62}$"},message:"must match pattern \""+"^(?!constructor$)[a-z][a-z0-9-]{0,62}$"+"\"",schema:"^(?!constructor$)[a-z][a-z0-9-]{0,62}$",parentSchema:schema11.properties.regions.items.properties.id,data:data4};
if(vErrors === null){
vErrors = [err14];
}
else {
vErrors.push(err14);
}
errors++;
}
}
else {
const err15 = {instancePath:instancePath+"/regions/" + i0+"/id",schemaPath:"#/properties/regions/items/properties/id/type",keyword:"type",params:{type: "string"},message:"must be string",schema:schema11.properties.regions.items.properties.id.type,parentSchema:schema11.properties.regions.items.properties.id,data:data4};
if(vErrors === null){
vErrors = [err15];
}
else {
vErrors.push(err15);
}
errors++;
}
}
if(data3.port !== undefined){
let data5 = data3.port;
if(!(((typeof data5 == "number") && (!(data5 % 1) && !isNaN(data5))) && (isFinite(data5)))){
const err16 = {instancePath:instancePath+"/regions/" + i0+"/port",schemaPath:"#/properties/regions/items/properties/port/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.regions.items.properties.port.type,parentSchema:schema11.properties.regions.items.properties.port,data:data5};
if(vErrors === null){
vErrors = [err16];
}
else {
vErrors.push(err16);
}
errors++;
}
if((typeof data5 == "number") && (isFinite(data5))){
if(data5 > 65535 || isNaN(data5)){
const err17 = {instancePath:instancePath+"/regions/" + i0+"/port",schemaPath:"#/properties/regions/items/properties/port/maximum",keyword:"maximum",params:{comparison: "<=", limit: 65535},message:"must be <= 65535",schema:65535,parentSchema:schema11.properties.regions.items.properties.port,data:data5};
if(vErrors === null){
vErrors = [err17];
}
else {
vErrors.push(err17);
}
errors++;
}
if(data5 < 1 || isNaN(data5)){
const err18 = {instancePath:instancePath+"/regions/" + i0+"/port",schemaPath:"#/properties/regions/items/properties/port/minimum",keyword:"minimum",params:{comparison: ">=", limit: 1},message:"must be >= 1",schema:1,parentSchema:schema11.properties.regions.items.properties.port,data:data5};
if(vErrors === null){
vErrors = [err18];
}
else {
vErrors.push(err18);
}
errors++;
}
}
}
if(data3.databaseUrl !== undefined){
let data6 = data3.databaseUrl;
if(typeof data6 === "string"){
if(!pattern3.test(data6)){
const err19 = {instancePath:instancePath+"/regions/" + i0+"/databaseUrl",schemaPath:"#/properties/regions/items/properties/databaseUrl/pattern",keyword:"pattern",params:{pattern: "^postgres(ql)?://"},message:"must match pattern \""+"^postgres(ql)?://"+"\"",schema:"^postgres(ql)?://",parentSchema:schema11.properties.regions.items.properties.databaseUrl,data:data6};
if(vErrors === null){
vErrors = [err19];
}
else {
vErrors.push(err19);
}
errors++;
}
}
else {
const err20 = {instancePath:instancePath+"/regions/" + i0+"/databaseUrl",schemaPath:"#/properties/regions/items/properties/databaseUrl/type",keyword:"type",params:{type: "string"},message:"must be string",schema:schema11.properties.regions.items.properties.databaseUrl.type,parentSchema:schema11.properties.regions.items.properties.databaseUrl,data:data6};
if(vErrors === null){
vErrors = [err20];
}
else {
vErrors.push(err20);
}
errors++;
}
}
if(data3.host !== undefined){
let data7 = data3.host;
if(typeof data7 === "string"){
if(func3(data7) < 1){
const err21 = {instancePath:instancePath+"/regions/" + i0+"/host",schemaPath:"#/properties/regions/items/properties/host/minLength",keyword:"minLength",params:{limit: 1},message:"must NOT have fewer than 1 characters",schema:1,parentSchema:schema11.properties.regions.items.properties.host,data:data7};
if(vErrors === null){
vErrors = [err21];
}
else {
vErrors.push(err21);
}
errors++;
}
}
else {
const err22 = {instancePath:instancePath+"/regions/" + i0+"/host",schemaPath:"#/properties/regions/items/properties/host/type",keyword:"type",params:{type: "string"},message:"must be string",schema:schema11.properties.regions.items.properties.host.type,parentSchema:schema11.properties.regions.items.properties.host,data:data7};
if(vErrors === null){
vErrors = [err22];
}
else {
vErrors.push(err22);
}
errors++;
}
}
if(data3.publicUrl !== undefined){
let data8 = data3.publicUrl;
if(typeof data8 === "string"){
if(!pattern4.test(data8)){
const err23 = {instancePath:instancePath+"/regions/" + i0+"/publicUrl",schemaPath:"#/properties/regions/items/properties/publicUrl/pattern",keyword:"pattern",params:{pattern: "^https?://"},message:"must match pattern \""+"^https?://"+"\"",schema:"^https?://",parentSchema:schema11.properties.regions.items.properties.publicUrl,data:data8};
if(vErrors === null){
vErrors = [err23];
}
else {
vErrors.push(err23);
}
errors++;
}
}
else {
const err24 = {instancePath:instancePath+"/regions/" + i0+"/publicUrl",schemaPath:"#/properties/regions/items/properties/publicUrl/type",keyword:"type",params:{type: "string"},message:"must be string",schema:schema11.properties.regions.items.properties.publicUrl.type,parentSchema:schema11.properties.regions.items.properties.publicUrl,data:data8};
if(vErrors === null){
vErrors = [err24];
}
else {
vErrors.push(err24);
}
errors++;
}
}
if(data3.redisUrl !== undefined){
let data9 = data3.redisUrl;
if(typeof data9 === "string"){
if(!pattern0.test(data9)){
const err25 = {instancePath:instancePath+"/regions/" + i0+"/redisUrl",schemaPath:"#/properties/regions/items/properties/redisUrl/pattern",keyword:"pattern",params:{pattern: "^rediss?://"},message:"must match pattern \""+"^rediss?://"+"\"",schema:"^rediss?://",parentSchema:schema11.properties.regions.items.properties.redisUrl,data:data9};
if(vErrors === null){
vErrors = [err25];
}
else {
vErrors.push(err25);
}
errors++;
}
}
else {
const err26 = {instancePath:instancePath+"/regions/" + i0+"/redisUrl",schemaPath:"#/properties/regions/items/properties/redisUrl/type",keyword:"type",params:{type: "string"},message:"must be string",schema:schema11.properties.regions.items.properties.redisUrl.type,parentSchema:schema11.properties.regions.items.properties.redisUrl,data:data9};
if(vErrors === null){
vErrors = [err26];
}
else {
vErrors.push(err26);
}
errors++;
}
}
if(data3.operatorPort !== undefined){
let data10 = data3.operatorPort;
if(!(((typeof data10 == "number") && (!(data10 % 1) && !isNaN(data10))) && (isFinite(data10)))){
const err27 = {instancePath:instancePath+"/regions/" + i0+"/operatorPort",schemaPath:"#/properties/regions/items/properties/operatorPort/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.regions.items.properties.operatorPort.type,parentSchema:schema11.properties.regions.items.properties.operatorPort,data:data10};
if(vErrors === null){
vErrors = [err27];
}
else {
vErrors.push(err27);
}
errors++;
}
if((typeof data10 == "number") && (isFinite(data10))){
if(data10 > 65535 || isNaN(data10)){
const err28 = {instancePath:instancePath+"/regions/" + i0+"/operatorPort",schemaPath:"#/properties/regions/items/properties/operatorPort/maximum",keyword:"maximum",params:{comparison: "<=", limit: 65535},message:"must be <= 65535",schema:65535,parentSchema:schema11.properties.regions.items.properties.operatorPort,data:data10};
if(vErrors === null){
vErrors = [err28];
}
else {
vErrors.push(err28);
}
errors++;
}
if(data10 < 1 || isNaN(data10)){
const err29 = {instancePath:instancePath+"/regions/" + i0+"/operatorPort",schemaPath:"#/properties/regions/items/properties/operatorPort/minimum",keyword:"minimum",params:{comparison: ">=", limit: 1},message:"must be >= 1",schema:1,parentSchema:schema11.properties.regions.items.properties.operatorPort,data:data10};
if(vErrors === null){
vErrors = [err29];
}
else {
vErrors.push(err29);
}
errors++;
}
}
}
}
else {
const err30 = {instancePath:instancePath+"/regions/" + i0,schemaPath:"#/properties/regions/items/type",keyword:"type",params:{type: "object"},message:"must be object",schema:schema11.properties.regions.items.type,parentSchema:schema11.properties.regions.items,data:data3};
if(vErrors === null){
vErrors = [err30];
}
else {
vErrors.push(err30);
}
errors++;
}
}
}
else {
const err31 = {instancePath:instancePath+"/regions",schemaPath:"#/properties/regions/type",keyword:"type",params:{type: "array"},message:"must be array",schema:schema11.properties.regions.type,parentSchema:schema11.properties.regions,data:data2};
if(vErrors === null){
vErrors = [err31];
}
else {
vErrors.push(err31);
}
errors++;
}
}
if(data.metadataAllowedHosts !== undefined){
let data11 = data.metadataAllowedHosts;
if(Array.isArray(data11)){
const len1 = data11.length;
for(let i1=0; i1<len1; i1++){
let data12 = data11[i1];
if(typeof data12 === "string"){
if(!pattern6.test(data12)){
const err32 = {instancePath:instancePath+"/metadataAllowedHosts/" + i1,schemaPath:"#/properties/metadataAllowedHosts/items/pattern",keyword:"pattern",params:{pattern: "^[^\\s/]+:[0-9]{1,5}$"},message:"must match pattern \""+"^[^\\s/]+:[0-9]{1,5}$"+"\"",schema:"^[^\\s/]+:[0-9]{1,5}$",parentSchema:schema11.properties.metadataAllowedHosts.items,data:data12};
if(vErrors === null){
vErrors = [err32];
}
else {
vErrors.push(err32);
}
errors++;
}
}
else {
const err33 = {instancePath:instancePath+"/metadataAllowedHosts/" + i1,schemaPath:"#/properties/metadataAllowedHosts/items/type",keyword:"type",params:{type: "string"},message:"must be string",schema:schema11.properties.metadataAllowedHosts.items.type,parentSchema:schema11.properties.metadataAllowedHosts.items,data:data12};
if(vErrors === null){
vErrors = [err33];
}
else {
vErrors.push(err33);
}
errors++;
}
}
}
else {
const err34 = {instancePath:instancePath+"/metadataAllowedHosts",schemaPath:"#/properties/metadataAllowedHosts/type",keyword:"type",params:{type: "array"},message:"must be array",schema:schema11.properties.metadataAllowedHosts.type,parentSchema:schema11.properties.metadataAllowedHosts,data:data11};
if(vErrors === null){
vErrors = [err34];
}
else {
vErrors.push(err34);
}
errors++;
}
}
if(data.metadataRefreshIntervalSeconds !== undefined){
let data13 = data.metadataRefreshIntervalSeconds;
if(!(((typeof data13 == "number") && (!(data13 % 1) && !isNaN(data13))) && (isFinite(data13)))){
const err35 = {instancePath:instancePath+"/metadataRefreshIntervalSeconds",schemaPath:"#/properties/metadataRefreshIntervalSeconds/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.metadataRefreshIntervalSeconds.type,parentSchema:schema11.properties.metadataRefreshIntervalSeconds,data:data13};
if(vErrors === null){
vErrors = [err35];
}
else {
vErrors.push(err35);
}
errors++;
}
if((typeof data13 == "number") && (isFinite(data13))){
if(data13 < 1 || isNaN(data13)){
const err36 = {instancePath:instancePath+"/metadataRefreshIntervalSeconds",schemaPath:"#/properties/metadataRefreshIntervalSeconds/minimum",keyword:"minimum",params:{comparison: ">=", limit: 1},message:"must be >= 1",schema:1,parentSchema:schema11.properties.metadataRefreshIntervalSeconds,data:data13};
if(vErrors === null){
vErrors = [err36];
}
else {
vErrors.push(err36);
}
errors++;
}
}
}
if(data.adoptAfterSeconds !== undefined){
let data14 = data.adoptAfterSeconds;
if(!(((typeof data14 == "number") && (!(data14 % 1) && !isNaN(data14))) && (isFinite(data14)))){
const err37 = {instancePath:instancePath+"/adoptAfterSeconds",schemaPath:"#/properties/adoptAfterSeconds/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.adoptAfterSeconds.type,parentSchema:schema11.properties.adoptAfterSeconds,data:data14};
if(vErrors === null){
vErrors = [err37];
}
else {
vErrors.push(err37);
}
errors++;
}
if((typeof data14 == "number") && (isFinite(data14))){
if(data14 > 86400 || isNaN(data14)){
const err38 = {instancePath:instancePath+"/adoptAfterSeconds",schemaPath:"#/properties/adoptAfterSeconds/maximum",keyword:"maximum",params:{comparison: "<=", limit: 86400},message:"must be <= 86400",schema:86400,parentSchema:schema11.properties.adoptAfterSeconds,data:data14};
if(vErrors === null){
vErrors = [err38];
}
else {
vErrors.push(err38);
}
errors++;
}
if(data14 < 1 || isNaN(data14)){
const err39 = {instancePath:instancePath+"/adoptAfterSeconds",schemaPath:"#/properties/adoptAfterSeconds/minimum",keyword:"minimum",params:{comparison: ">=", limit: 1},message:"must be >= 1",schema:1,parentSchema:schema11.properties.adoptAfterSeconds,data:data14};
if(vErrors === null){
vErrors = [err39];
}
else {
vErrors.push(err39);
}
errors++;
}
}
}
if(data.maxCredentialsPerOrg !== undefined){
let data15 = data.maxCredentialsPerOrg;
if(!(((typeof data15 == "number") && (!(data15 % 1) && !isNaN(data15))) && (isFinite(data15)))){
const err40 = {instancePath:instancePath+"/maxCredentialsPerOrg",schemaPath:"#/properties/maxCredentialsPerOrg/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.maxCredentialsPerOrg.type,parentSchema:schema11.properties.maxCredentialsPerOrg,data:data15};
if(vErrors === null){
vErrors = [err40];
}
else {
vErrors.push(err40);
}
errors++;
}
if((typeof data15 == "number") && (isFinite(data15))){
if(data15 > 100000 || isNaN(data15)){
const err41 = {instancePath:instancePath+"/maxCredentialsPerOrg",schemaPath:"#/properties/maxCredentialsPerOrg/maximum",keyword:"maximum",params:{comparison: "<=", limit: 100000},message:"must be <= 100000",schema:100000,parentSchema:schema11.properties.maxCredentialsPerOrg,data:data15};
if(vErrors === null){
vErrors = [err41];
}
else {
vErrors.push(err41);
}
errors++;
}
if(data15 < 1 || isNaN(data15)){
const err42 = {instancePath:instancePath+"/maxCredentialsPerOrg",schemaPath:"#/properties/maxCredentialsPerOrg/minimum",keyword:"minimum",params:{comparison: ">=", limit: 1},message:"must be >= 1",schema:1,parentSchema:schema11.properties.maxCredentialsPerOrg,data:data15};
if(vErrors === null){
vErrors = [err42];
}
else {
vErrors.push(err42);
}
errors++;
}
}
}
if(data.metadataFetchConcurrency !== undefined){
let data16 = data.metadataFetchConcurrency;
if(data16 && typeof data16 == "object" && !Array.isArray(data16)){
for(const key2 in data16){
if(!(((key2 === "perOrg") || (key2 === "perRegion")) || (key2 === "waitMs"))){
const err43 = {instancePath:instancePath+"/metadataFetchConcurrency",schemaPath:"#/properties/metadataFetchConcurrency/additionalProperties",keyword:"additionalProperties",params:{additionalProperty: key2},message:"must NOT have additional properties",schema:false,parentSchema:schema11.properties.metadataFetchConcurrency,data:data16};
if(vErrors === null){
vErrors = [err43];
}
else {
vErrors.push(err43);
}
errors++;
}
}
if(data16.perOrg !== undefined){
let data17 = data16.perOrg;
if(!(((typeof data17 == "number") && (!(data17 % 1) && !isNaN(data17))) && (isFinite(data17)))){
const err44 = {instancePath:instancePath+"/metadataFetchConcurrency/perOrg",schemaPath:"#/properties/metadataFetchConcurrency/properties/perOrg/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.metadataFetchConcurrency.properties.perOrg.type,parentSchema:schema11.properties.metadataFetchConcurrency.properties.perOrg,data:data17};
if(vErrors === null){
vErrors = [err44];
}
else {
vErrors.push(err44);
}
errors++;
}
if((typeof data17 == "number") && (isFinite(data17))){
if(data17 > 100 || isNaN(data17)){
const err45 = {instancePath:instancePath+"/metadataFetchConcurrency/perOrg",schemaPath:"#/properties/metadataFetchConcurrency/properties/perOrg/maximum",keyword:"maximum",params:{comparison: "<=", limit: 100},message:"must be <= 100",schema:100,parentSchema:schema11.properties.metadataFetchConcurrency.properties.perOrg,data:data17};
if(vErrors === null){
vErrors = [err45];
}
else {
vErrors.push(err45);
}
errors++;
}
if(data17 < 1 || isNaN(data17)){
const err46 = {instancePath:instancePath+"/metadataFetchConcurrency/perOrg",schemaPath:"#/properties/metadataFetchConcurrency/properties/perOrg/minimum",keyword:"minimum",params:{comparison: ">=", limit: 1},message:"must be >= 1",schema:1,parentSchema:schema11.properties.metadataFetchConcurrency.properties.perOrg,data:data17};
if(vErrors === null){
vErrors = [err46];
}
else {
vErrors.push(err46);
}
errors++;
}
}
}
if(data16.perRegion !== undefined){
let data18 = data16.perRegion;
if(!(((typeof data18 == "number") && (!(data18 % 1) && !isNaN(data18))) && (isFinite(data18)))){
const err47 = {instancePath:instancePath+"/metadataFetchConcurrency/perRegion",schemaPath:"#/properties/metadataFetchConcurrency/properties/perRegion/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.metadataFetchConcurrency.properties.perRegion.type,parentSchema:schema11.properties.metadataFetchConcurrency.properties.perRegion,data:data18};
if(vErrors === null){
vErrors = [err47];
}
else {
vErrors.push(err47);
}
errors++;
}
if((typeof data18 == "number") && (isFinite(data18))){
if(data18 > 1000 || isNaN(data18)){
const err48 = {instancePath:instancePath+"/metadataFetchConcurrency/perRegion",schemaPath:"#/properties/metadataFetchConcurrency/properties/perRegion/maximum",keyword:"maximum",params:{comparison: "<=", limit: 1000},message:"must be <= 1000",schema:1000,parentSchema:schema11.properties.metadataFetchConcurrency.properties.perRegion,data:data18};
if(vErrors === null){
vErrors = [err48];
}
else {
vErrors.push(err48);
}
errors++;
}
if(data18 < 1 || isNaN(data18)){
const err49 = {instancePath:instancePath+"/metadataFetchConcurrency/perRegion",schemaPath:"#/properties/metadataFetchConcurrency/properties/perRegion/minimum",keyword:"minimum",params:{comparison: ">=", limit: 1},message:"must be >= 1",schema:1,parentSchema:schema11.properties.metadataFetchConcurrency.properties.perRegion,data:data18};
if(vErrors === null){
vErrors = [err49];
}
else {
vErrors.push(err49);
}
errors++;
}
}
}
if(data16.waitMs !== undefined){
let data19 = data16.waitMs;
if(!(((typeof data19 == "number") && (!(data19 % 1) && !isNaN(data19))) && (isFinite(data19)))){
const err50 = {instancePath:instancePath+"/metadataFetchConcurrency/waitMs",schemaPath:"#/properties/metadataFetchConcurrency/properties/waitMs/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.metadataFetchConcurrency.properties.waitMs.type,parentSchema:schema11.properties.metadataFetchConcurrency.properties.waitMs,data:data19};
if(vErrors === null){
vErrors = [err50];
}
else {
vErrors.push(err50);
}
errors++;
}
if((typeof data19 == "number") && (isFinite(data19))){
if(data19 > 60000 || isNaN(data19)){
const err51 = {instancePath:instancePath+"/metadataFetchConcurrency/waitMs",schemaPath:"#/properties/metadataFetchConcurrency/properties/waitMs/maximum",keyword:"maximum",params:{comparison: "<=", limit: 60000},message:"must be <= 60000",schema:60000,parentSchema:schema11.properties.metadataFetchConcurrency.properties.waitMs,data:data19};
if(vErrors === null){
vErrors = [err51];
}
else {
vErrors.push(err51);
}
errors++;
}
if(data19 < 0 || isNaN(data19)){
const err52 = {instancePath:instancePath+"/metadataFetchConcurrency/waitMs",schemaPath:"#/properties/metadataFetchConcurrency/properties/waitMs/minimum",keyword:"minimum",params:{comparison: ">=", limit: 0},message:"must be >= 0",schema:0,parentSchema:schema11.properties.metadataFetchConcurrency.properties.waitMs,data:data19};
if(vErrors === null){
vErrors = [err52];
}
else {
vErrors.push(err52);
}
errors++;
}
}
}
}
else {
const err53 = {instancePath:instancePath+"/metadataFetchConcurrency",schemaPath:"#/properties/metadataFetchConcurrency/type",keyword:"type",params:{type: "object"},message:"must be object",schema:schema11.properties.metadataFetchConcurrency.type,parentSchema:schema11.properties.metadataFetchConcurrency,data:data16};
if(vErrors === null){
vErrors = [err53];
}
else {
vErrors.push(err53);
}
errors++;
}
}
if(data.maxClockSkewMs !== undefined){
let data20 = data.maxClockSkewMs;
if(!(((typeof data20 == "number") && (!(data20 % 1) && !isNaN(data20))) && (isFinite(data20)))){
const err54 = {instancePath:instancePath+"/maxClockSkewMs",schemaPath:"#/properties/maxClockSkewMs/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.maxClockSkewMs.type,parentSchema:schema11.properties.maxClockSkewMs,data:data20};
if(vErrors === null){
vErrors = [err54];
}
else {
vErrors.push(err54);
}
errors++;
}
if((typeof data20 == "number") && (isFinite(data20))){
if(data20 > 86400000 || isNaN(data20)){
const err55 = {instancePath:instancePath+"/maxClockSkewMs",schemaPath:"#/properties/maxClockSkewMs/maximum",keyword:"maximum",params:{comparison: "<=", limit: 86400000},message:"must be <= 86400000",schema:86400000,parentSchema:schema11.properties.maxClockSkewMs,data:data20};
if(vErrors === null){
vErrors = [err55];
}
else {
vErrors.push(err55);
}
errors++;
}
if(data20 < 1 || isNaN(data20)){
const err56 = {instancePath:instancePath+"/maxClockSkewMs",schemaPath:"#/properties/maxClockSkewMs/minimum",keyword:"minimum",params:{comparison: ">=", limit: 1},message:"must be >= 1",schema:1,parentSchema:schema11.properties.maxClockSkewMs,data:data20};
if(vErrors === null){
vErrors = [err56];
}
else {
vErrors.push(err56);
}
errors++;
}
}
}
if(data.samlClockSkewSeconds !== undefined){
let data21 = data.samlClockSkewSeconds;
if(!(((typeof data21 == "number") && (!(data21 % 1) && !isNaN(data21))) && (isFinite(data21)))){
const err57 = {instancePath:instancePath+"/samlClockSkewSeconds",schemaPath:"#/properties/samlClockSkewSeconds/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.samlClockSkewSeconds.type,parentSchema:schema11.properties.samlClockSkewSeconds,data:data21};
if(vErrors === null){
vErrors = [err57];
}
else {
vErrors.push(err57);
}
errors++;
}
if((typeof data21 == "number") && (isFinite(data21))){
if(data21 > 600 || isNaN(data21)){
const err58 = {instancePath:instancePath+"/samlClockSkewSeconds",schemaPath:"#/properties/samlClockSkewSeconds/maximum",keyword:"maximum",params:{comparison: "<=", limit: 600},message:"must be <= 600",schema:600,parentSchema:schema11.properties.samlClockSkewSeconds,data:data21};
if(vErrors === null){
vErrors = [err58];
}
else {
vErrors.push(err58);
}
errors++;
}
if(data21 < 0 || isNaN(data21)){
const err59 = {instancePath:instancePath+"/samlClockSkewSeconds",schemaPath:"#/properties/samlClockSkewSeconds/minimum",keyword:"minimum",params:{comparison: ">=", limit: 0},message:"must be >= 0",schema:0,parentSchema:schema11.properties.samlClockSkewSeconds,data:data21};
if(vErrors === null){
vErrors = [err59];
}
else {
vErrors.push(err59);
}
errors++;
}
}
}
if(data.streamMaxLength !== undefined){
let data22 = data.streamMaxLength;
if(!(((typeof data22 == "number") && (!(data22 % 1) && !isNaN(data22))) && (isFinite(data22)))){
const err60 = {instancePath:instancePath+"/streamMaxLength",schemaPath:"#/properties/streamMaxLength/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.streamMaxLength.type,parentSchema:schema11.properties.streamMaxLength,data:data22};
if(vErrors === null){
vErrors = [err60];
}
else {
vErrors.push(err60);
}
errors++;
}
if((typeof data22 == "number") && (isFinite(data22))){
if(data22 < 100 || isNaN(data22)){
const err61 = {instancePath:instancePath+"/streamMaxLength",schemaPath:"#/properties/streamMaxLength/minimum",keyword:"minimum",params:{comparison: ">=", limit: 100},message:"must be >= 100",schema:100,parentSchema:schema11.properties.streamMaxLength,data:data22};
if(vErrors === null){
vErrors = [err61];
}
else {
vErrors.push(err61);
}
errors++;
}
}
}
if(data.streamTrimIntervalMs !== undefined){
let data23 = data.streamTrimIntervalMs;
if(!(((typeof data23 == "number") && (!(data23 % 1) && !isNaN(data23))) && (isFinite(data23)))){
const err62 = {instancePath:instancePath+"/streamTrimIntervalMs",schemaPath:"#/properties/streamTrimIntervalMs/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.streamTrimIntervalMs.type,parentSchema:schema11.properties.streamTrimIntervalMs,data:data23};
if(vErrors === null){
vErrors = [err62];
}
else {
vErrors.push(err62);
}
errors++;
}
if((typeof data23 == "number") && (isFinite(data23))){
if(data23 > 600000 || isNaN(data23)){
const err63 = {instancePath:instancePath+"/streamTrimIntervalMs",schemaPath:"#/properties/streamTrimIntervalMs/maximum",keyword:"maximum",params:{comparison: "<=", limit: 600000},message:"must be <= 600000",schema:600000,parentSchema:schema11.properties.streamTrimIntervalMs,data:data23};
if(vErrors === null){
vErrors = [err63];
}
else {
vErrors.push(err63);
}
errors++;
}
if(data23 < 500 || isNaN(data23)){
const err64 = {instancePath:instancePath+"/streamTrimIntervalMs",schemaPath:"#/properties/streamTrimIntervalMs/minimum",keyword:"minimum",params:{comparison: ">=", limit: 500},message:"must be >= 500",schema:500,parentSchema:schema11.properties.streamTrimIntervalMs,data:data23};
if(vErrors === null){
vErrors = [err64];
}
else {
vErrors.push(err64);
}
errors++;
}
}
}
if(data.replicationPacks !== undefined){
let data24 = data.replicationPacks;
if(typeof data24 !== "boolean"){
const err65 = {instancePath:instancePath+"/replicationPacks",schemaPath:"#/properties/replicationPacks/type",keyword:"type",params:{type: "boolean"},message:"must be boolean",schema:schema11.properties.replicationPacks.type,parentSchema:schema11.properties.replicationPacks,data:data24};
if(vErrors === null){
vErrors = [err65];
}
else {
vErrors.push(err65);
}
errors++;
}
}
if(data.ackSignatures !== undefined){
let data25 = data.ackSignatures;
const _errs55 = errors;
let valid7 = false;
const _errs56 = errors;
if(typeof data25 !== "string"){
const err66 = {instancePath:instancePath+"/ackSignatures",schemaPath:"#/properties/ackSignatures/anyOf/0/type",keyword:"type",params:{type: "string"},message:"must be string",schema:schema11.properties.ackSignatures.anyOf[0].type,parentSchema:schema11.properties.ackSignatures.anyOf[0],data:data25};
if(vErrors === null){
vErrors = [err66];
}
else {
vErrors.push(err66);
}
errors++;
}
if("off" !== data25){
const err67 = {instancePath:instancePath+"/ackSignatures",schemaPath:"#/properties/ackSignatures/anyOf/0/const",keyword:"const",params:{allowedValue: "off"},message:"must be equal to constant",schema:"off",parentSchema:schema11.properties.ackSignatures.anyOf[0],data:data25};
if(vErrors === null){
vErrors = [err67];
}
else {
vErrors.push(err67);
}
errors++;
}
var _valid0 = _errs56 === errors;
valid7 = valid7 || _valid0;
if(!valid7){
const _errs58 = errors;
if(typeof data25 !== "string"){
const err68 = {instancePath:instancePath+"/ackSignatures",schemaPath:"#/properties/ackSignatures/anyOf/1/type",keyword:"type",params:{type: "string"},message:"must be string",schema:schema11.properties.ackSignatures.anyOf[1].type,parentSchema:schema11.properties.ackSignatures.anyOf[1],data:data25};
if(vErrors === null){
vErrors = [err68];
}
else {
vErrors.push(err68);
}
errors++;
}
if("sign" !== data25){
const err69 = {instancePath:instancePath+"/ackSignatures",schemaPath:"#/properties/ackSignatures/anyOf/1/const",keyword:"const",params:{allowedValue: "sign"},message:"must be equal to constant",schema:"sign",parentSchema:schema11.properties.ackSignatures.anyOf[1],data:data25};
if(vErrors === null){
vErrors = [err69];
}
else {
vErrors.push(err69);
}
errors++;
}
var _valid0 = _errs58 === errors;
valid7 = valid7 || _valid0;
if(!valid7){
const _errs60 = errors;
if(typeof data25 !== "string"){
const err70 = {instancePath:instancePath+"/ackSignatures",schemaPath:"#/properties/ackSignatures/anyOf/2/type",keyword:"type",params:{type: "string"},message:"must be string",schema:schema11.properties.ackSignatures.anyOf[2].type,parentSchema:schema11.properties.ackSignatures.anyOf[2],data:data25};
if(vErrors === null){
vErrors = [err70];
}
else {
vErrors.push(err70);
}
errors++;
}
if("require" !== data25){
const err71 = {instancePath:instancePath+"/ackSignatures",schemaPath:"#/properties/ackSignatures/anyOf/2/const",keyword:"const",params:{allowedValue: "require"},message:"must be equal to constant",schema:"require",parentSchema:schema11.properties.ackSignatures.anyOf[2],data:data25};
if(vErrors === null){
vErrors = [err71];
}
else {
vErrors.push(err71);
}
errors++;
}
var _valid0 = _errs60 === errors;
valid7 = valid7 || _valid0;
}
}
if(!valid7){
const err72 = {instancePath:instancePath+"/ackSignatures",schemaPath:"#/properties/ackSignatures/anyOf",keyword:"anyOf",params:{},message:"must match a schema in anyOf",schema:schema11.properties.ackSignatures.anyOf,parentSchema:schema11.properties.ackSignatures,data:data25};
if(vErrors === null){
vErrors = [err72];
}
else {
vErrors.push(err72);
}
errors++;
}
else {
errors = _errs55;
if(vErrors !== null){
if(_errs55){
vErrors.length = _errs55;
}
else {
vErrors = null;
}
}
}
}
if(data.writeTransactionTimeoutMs !== undefined){
let data26 = data.writeTransactionTimeoutMs;
if(!(((typeof data26 == "number") && (!(data26 % 1) && !isNaN(data26))) && (isFinite(data26)))){
const err73 = {instancePath:instancePath+"/writeTransactionTimeoutMs",schemaPath:"#/properties/writeTransactionTimeoutMs/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.writeTransactionTimeoutMs.type,parentSchema:schema11.properties.writeTransactionTimeoutMs,data:data26};
if(vErrors === null){
vErrors = [err73];
}
else {
vErrors.push(err73);
}
errors++;
}
if((typeof data26 == "number") && (isFinite(data26))){
if(data26 > 20000 || isNaN(data26)){
const err74 = {instancePath:instancePath+"/writeTransactionTimeoutMs",schemaPath:"#/properties/writeTransactionTimeoutMs/maximum",keyword:"maximum",params:{comparison: "<=", limit: 20000},message:"must be <= 20000",schema:20000,parentSchema:schema11.properties.writeTransactionTimeoutMs,data:data26};
if(vErrors === null){
vErrors = [err74];
}
else {
vErrors.push(err74);
}
errors++;
}
if(data26 < 1000 || isNaN(data26)){
const err75 = {instancePath:instancePath+"/writeTransactionTimeoutMs",schemaPath:"#/properties/writeTransactionTimeoutMs/minimum",keyword:"minimum",params:{comparison: ">=", limit: 1000},message:"must be >= 1000",schema:1000,parentSchema:schema11.properties.writeTransactionTimeoutMs,data:data26};
if(vErrors === null){
vErrors = [err75];
}
else {
vErrors.push(err75);
}
errors++;
}
}
}
if(data.republishAfterMs !== undefined){
let data27 = data.republishAfterMs;
if(!(((typeof data27 == "number") && (!(data27 % 1) && !isNaN(data27))) && (isFinite(data27)))){
const err76 = {instancePath:instancePath+"/republishAfterMs",schemaPath:"#/properties/republishAfterMs/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.republishAfterMs.type,parentSchema:schema11.properties.republishAfterMs,data:data27};
if(vErrors === null){
vErrors = [err76];
}
else {
vErrors.push(err76);
}
errors++;
}
if((typeof data27 == "number") && (isFinite(data27))){
if(data27 > 3600000 || isNaN(data27)){
const err77 = {instancePath:instancePath+"/republishAfterMs",schemaPath:"#/properties/republishAfterMs/maximum",keyword:"maximum",params:{comparison: "<=", limit: 3600000},message:"must be <= 3600000",schema:3600000,parentSchema:schema11.properties.republishAfterMs,data:data27};
if(vErrors === null){
vErrors = [err77];
}
else {
vErrors.push(err77);
}
errors++;
}
if(data27 < 1000 || isNaN(data27)){
const err78 = {instancePath:instancePath+"/republishAfterMs",schemaPath:"#/properties/republishAfterMs/minimum",keyword:"minimum",params:{comparison: ">=", limit: 1000},message:"must be >= 1000",schema:1000,parentSchema:schema11.properties.republishAfterMs,data:data27};
if(vErrors === null){
vErrors = [err78];
}
else {
vErrors.push(err78);
}
errors++;
}
}
}
if(data.claimIntervalMs !== undefined){
let data28 = data.claimIntervalMs;
if(!(((typeof data28 == "number") && (!(data28 % 1) && !isNaN(data28))) && (isFinite(data28)))){
const err79 = {instancePath:instancePath+"/claimIntervalMs",schemaPath:"#/properties/claimIntervalMs/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.claimIntervalMs.type,parentSchema:schema11.properties.claimIntervalMs,data:data28};
if(vErrors === null){
vErrors = [err79];
}
else {
vErrors.push(err79);
}
errors++;
}
if((typeof data28 == "number") && (isFinite(data28))){
if(data28 > 60000 || isNaN(data28)){
const err80 = {instancePath:instancePath+"/claimIntervalMs",schemaPath:"#/properties/claimIntervalMs/maximum",keyword:"maximum",params:{comparison: "<=", limit: 60000},message:"must be <= 60000",schema:60000,parentSchema:schema11.properties.claimIntervalMs,data:data28};
if(vErrors === null){
vErrors = [err80];
}
else {
vErrors.push(err80);
}
errors++;
}
if(data28 < 100 || isNaN(data28)){
const err81 = {instancePath:instancePath+"/claimIntervalMs",schemaPath:"#/properties/claimIntervalMs/minimum",keyword:"minimum",params:{comparison: ">=", limit: 100},message:"must be >= 100",schema:100,parentSchema:schema11.properties.claimIntervalMs,data:data28};
if(vErrors === null){
vErrors = [err81];
}
else {
vErrors.push(err81);
}
errors++;
}
}
}
if(data.ackTtlSeconds !== undefined){
let data29 = data.ackTtlSeconds;
if(!(((typeof data29 == "number") && (!(data29 % 1) && !isNaN(data29))) && (isFinite(data29)))){
const err82 = {instancePath:instancePath+"/ackTtlSeconds",schemaPath:"#/properties/ackTtlSeconds/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.ackTtlSeconds.type,parentSchema:schema11.properties.ackTtlSeconds,data:data29};
if(vErrors === null){
vErrors = [err82];
}
else {
vErrors.push(err82);
}
errors++;
}
if((typeof data29 == "number") && (isFinite(data29))){
if(data29 < 60 || isNaN(data29)){
const err83 = {instancePath:instancePath+"/ackTtlSeconds",schemaPath:"#/properties/ackTtlSeconds/minimum",keyword:"minimum",params:{comparison: ">=", limit: 60},message:"must be >= 60",schema:60,parentSchema:schema11.properties.ackTtlSeconds,data:data29};
if(vErrors === null){
vErrors = [err83];
}
else {
vErrors.push(err83);
}
errors++;
}
}
}
if(data.tombstoneCollection !== undefined){
let data30 = data.tombstoneCollection;
if(data30 && typeof data30 == "object" && !Array.isArray(data30)){
for(const key3 in data30){
if(!((((key3 === "enabled") || (key3 === "intervalMs")) || (key3 === "minAgeMs")) || (key3 === "batchSize"))){
const err84 = {instancePath:instancePath+"/tombstoneCollection",schemaPath:"#/properties/tombstoneCollection/additionalProperties",keyword:"additionalProperties",params:{additionalProperty: key3},message:"must NOT have additional properties",schema:false,parentSchema:schema11.properties.tombstoneCollection,data:data30};
if(vErrors === null){
vErrors = [err84];
}
else {
vErrors.push(err84);
}
errors++;
}
}
if(data30.enabled !== undefined){
let data31 = data30.enabled;
if(typeof data31 !== "boolean"){
const err85 = {instancePath:instancePath+"/tombstoneCollection/enabled",schemaPath:"#/properties/tombstoneCollection/properties/enabled/type",keyword:"type",params:{type: "boolean"},message:"must be boolean",schema:schema11.properties.tombstoneCollection.properties.enabled.type,parentSchema:schema11.properties.tombstoneCollection.properties.enabled,data:data31};
if(vErrors === null){
vErrors = [err85];
}
else {
vErrors.push(err85);
}
errors++;
}
}
if(data30.intervalMs !== undefined){
let data32 = data30.intervalMs;
if(!(((typeof data32 == "number") && (!(data32 % 1) && !isNaN(data32))) && (isFinite(data32)))){
const err86 = {instancePath:instancePath+"/tombstoneCollection/intervalMs",schemaPath:"#/properties/tombstoneCollection/properties/intervalMs/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.tombstoneCollection.properties.intervalMs.type,parentSchema:schema11.properties.tombstoneCollection.properties.intervalMs,data:data32};
if(vErrors === null){
vErrors = [err86];
}
else {
vErrors.push(err86);
}
errors++;
}
if((typeof data32 == "number") && (isFinite(data32))){
if(data32 > 300000 || isNaN(data32)){
const err87 = {instancePath:instancePath+"/tombstoneCollection/intervalMs",schemaPath:"#/properties/tombstoneCollection/properties/intervalMs/maximum",keyword:"maximum",params:{comparison: "<=", limit: 300000},message:"must be <= 300000",schema:300000,parentSchema:schema11.properties.tombstoneCollection.properties.intervalMs,data:data32};
if(vErrors === null){
vErrors = [err87];
}
else {
vErrors.push(err87);
}
errors++;
}
if(data32 < 100 || isNaN(data32)){
const err88 = {instancePath:instancePath+"/tombstoneCollection/intervalMs",schemaPath:"#/properties/tombstoneCollection/properties/intervalMs/minimum",keyword:"minimum",params:{comparison: ">=", limit: 100},message:"must be >= 100",schema:100,parentSchema:schema11.properties.tombstoneCollection.properties.intervalMs,data:data32};
if(vErrors === null){
vErrors = [err88];
}
else {
vErrors.push(err88);
}
errors++;
}
}
}
if(data30.minAgeMs !== undefined){
let data33 = data30.minAgeMs;
if(!(((typeof data33 == "number") && (!(data33 % 1) && !isNaN(data33))) && (isFinite(data33)))){
const err89 = {instancePath:instancePath+"/tombstoneCollection/minAgeMs",schemaPath:"#/properties/tombstoneCollection/properties/minAgeMs/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.tombstoneCollection.properties.minAgeMs.type,parentSchema:schema11.properties.tombstoneCollection.properties.minAgeMs,data:data33};
if(vErrors === null){
vErrors = [err89];
}
else {
vErrors.push(err89);
}
errors++;
}
if((typeof data33 == "number") && (isFinite(data33))){
if(data33 > 2592000000 || isNaN(data33)){
const err90 = {instancePath:instancePath+"/tombstoneCollection/minAgeMs",schemaPath:"#/properties/tombstoneCollection/properties/minAgeMs/maximum",keyword:"maximum",params:{comparison: "<=", limit: 2592000000},message:"must be <= 2592000000",schema:2592000000,parentSchema:schema11.properties.tombstoneCollection.properties.minAgeMs,data:data33};
if(vErrors === null){
vErrors = [err90];
}
else {
vErrors.push(err90);
}
errors++;
}
if(data33 < 0 || isNaN(data33)){
const err91 = {instancePath:instancePath+"/tombstoneCollection/minAgeMs",schemaPath:"#/properties/tombstoneCollection/properties/minAgeMs/minimum",keyword:"minimum",params:{comparison: ">=", limit: 0},message:"must be >= 0",schema:0,parentSchema:schema11.properties.tombstoneCollection.properties.minAgeMs,data:data33};
if(vErrors === null){
vErrors = [err91];
}
else {
vErrors.push(err91);
}
errors++;
}
}
}
if(data30.batchSize !== undefined){
let data34 = data30.batchSize;
if(!(((typeof data34 == "number") && (!(data34 % 1) && !isNaN(data34))) && (isFinite(data34)))){
const err92 = {instancePath:instancePath+"/tombstoneCollection/batchSize",schemaPath:"#/properties/tombstoneCollection/properties/batchSize/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.tombstoneCollection.properties.batchSize.type,parentSchema:schema11.properties.tombstoneCollection.properties.batchSize,data:data34};
if(vErrors === null){
vErrors = [err92];
}
else {
vErrors.push(err92);
}
errors++;
}
if((typeof data34 == "number") && (isFinite(data34))){
if(data34 > 10000 || isNaN(data34)){
const err93 = {instancePath:instancePath+"/tombstoneCollection/batchSize",schemaPath:"#/properties/tombstoneCollection/properties/batchSize/maximum",keyword:"maximum",params:{comparison: "<=", limit: 10000},message:"must be <= 10000",schema:10000,parentSchema:schema11.properties.tombstoneCollection.properties.batchSize,data:data34};
if(vErrors === null){
vErrors = [err93];
}
else {
vErrors.push(err93);
}
errors++;
}
if(data34 < 1 || isNaN(data34)){
const err94 = {instancePath:instancePath+"/tombstoneCollection/batchSize",schemaPath:"#/properties/tombstoneCollection/properties/batchSize/minimum",keyword:"minimum",params:{comparison: ">=", limit: 1},message:"must be >= 1",schema:1,parentSchema:schema11.properties.tombstoneCollection.properties.batchSize,data:data34};
if(vErrors === null){
vErrors = [err94];
}
else {
vErrors.push(err94);
}
errors++;
}
}
}
}
else {
const err95 = {instancePath:instancePath+"/tombstoneCollection",schemaPath:"#/properties/tombstoneCollection/type",keyword:"type",params:{type: "object"},message:"must be object",schema:schema11.properties.tombstoneCollection.type,parentSchema:schema11.properties.tombstoneCollection,data:data30};
if(vErrors === null){
vErrors = [err95];
}
else {
vErrors.push(err95);
}
errors++;
}
}
if(data.admission !== undefined){
let data35 = data.admission;
if(data35 && typeof data35 == "object" && !Array.isArray(data35)){
for(const key4 in data35){
if(!((((key4 === "writes") || (key4 === "reads")) || (key4 === "databaseSlots")) || (key4 === "retryAfterSeconds"))){
const err96 = {instancePath:instancePath+"/admission",schemaPath:"#/properties/admission/additionalProperties",keyword:"additionalProperties",params:{additionalProperty: key4},message:"must NOT have additional properties",schema:false,parentSchema:schema11.properties.admission,data:data35};
if(vErrors === null){
vErrors = [err96];
}
else {
vErrors.push(err96);
}
errors++;
}
}
if(data35.writes !== undefined){
let data36 = data35.writes;
if(data36 && typeof data36 == "object" && !Array.isArray(data36)){
for(const key5 in data36){
if(!(((key5 === "concurrency") || (key5 === "queue")) || (key5 === "queueWaitMs"))){
const err97 = {instancePath:instancePath+"/admission/writes",schemaPath:"#/properties/admission/properties/writes/additionalProperties",keyword:"additionalProperties",params:{additionalProperty: key5},message:"must NOT have additional properties",schema:false,parentSchema:schema11.properties.admission.properties.writes,data:data36};
if(vErrors === null){
vErrors = [err97];
}
else {
vErrors.push(err97);
}
errors++;
}
}
if(data36.concurrency !== undefined){
let data37 = data36.concurrency;
if(!(((typeof data37 == "number") && (!(data37 % 1) && !isNaN(data37))) && (isFinite(data37)))){
const err98 = {instancePath:instancePath+"/admission/writes/concurrency",schemaPath:"#/properties/admission/properties/writes/properties/concurrency/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.admission.properties.writes.properties.concurrency.type,parentSchema:schema11.properties.admission.properties.writes.properties.concurrency,data:data37};
if(vErrors === null){
vErrors = [err98];
}
else {
vErrors.push(err98);
}
errors++;
}
if((typeof data37 == "number") && (isFinite(data37))){
if(data37 > 64 || isNaN(data37)){
const err99 = {instancePath:instancePath+"/admission/writes/concurrency",schemaPath:"#/properties/admission/properties/writes/properties/concurrency/maximum",keyword:"maximum",params:{comparison: "<=", limit: 64},message:"must be <= 64",schema:64,parentSchema:schema11.properties.admission.properties.writes.properties.concurrency,data:data37};
if(vErrors === null){
vErrors = [err99];
}
else {
vErrors.push(err99);
}
errors++;
}
if(data37 < 1 || isNaN(data37)){
const err100 = {instancePath:instancePath+"/admission/writes/concurrency",schemaPath:"#/properties/admission/properties/writes/properties/concurrency/minimum",keyword:"minimum",params:{comparison: ">=", limit: 1},message:"must be >= 1",schema:1,parentSchema:schema11.properties.admission.properties.writes.properties.concurrency,data:data37};
if(vErrors === null){
vErrors = [err100];
}
else {
vErrors.push(err100);
}
errors++;
}
}
}
if(data36.queue !== undefined){
let data38 = data36.queue;
if(!(((typeof data38 == "number") && (!(data38 % 1) && !isNaN(data38))) && (isFinite(data38)))){
const err101 = {instancePath:instancePath+"/admission/writes/queue",schemaPath:"#/properties/admission/properties/writes/properties/queue/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.admission.properties.writes.properties.queue.type,parentSchema:schema11.properties.admission.properties.writes.properties.queue,data:data38};
if(vErrors === null){
vErrors = [err101];
}
else {
vErrors.push(err101);
}
errors++;
}
if((typeof data38 == "number") && (isFinite(data38))){
if(data38 > 100000 || isNaN(data38)){
const err102 = {instancePath:instancePath+"/admission/writes/queue",schemaPath:"#/properties/admission/properties/writes/properties/queue/maximum",keyword:"maximum",params:{comparison: "<=", limit: 100000},message:"must be <= 100000",schema:100000,parentSchema:schema11.properties.admission.properties.writes.properties.queue,data:data38};
if(vErrors === null){
vErrors = [err102];
}
else {
vErrors.push(err102);
}
errors++;
}
if(data38 < 0 || isNaN(data38)){
const err103 = {instancePath:instancePath+"/admission/writes/queue",schemaPath:"#/properties/admission/properties/writes/properties/queue/minimum",keyword:"minimum",params:{comparison: ">=", limit: 0},message:"must be >= 0",schema:0,parentSchema:schema11.properties.admission.properties.writes.properties.queue,data:data38};
if(vErrors === null){
vErrors = [err103];
}
else {
vErrors.push(err103);
}
errors++;
}
}
}
if(data36.queueWaitMs !== undefined){
let data39 = data36.queueWaitMs;
if(!(((typeof data39 == "number") && (!(data39 % 1) && !isNaN(data39))) && (isFinite(data39)))){
const err104 = {instancePath:instancePath+"/admission/writes/queueWaitMs",schemaPath:"#/properties/admission/properties/writes/properties/queueWaitMs/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.admission.properties.writes.properties.queueWaitMs.type,parentSchema:schema11.properties.admission.properties.writes.properties.queueWaitMs,data:data39};
if(vErrors === null){
vErrors = [err104];
}
else {
vErrors.push(err104);
}
errors++;
}
if((typeof data39 == "number") && (isFinite(data39))){
if(data39 > 120000 || isNaN(data39)){
const err105 = {instancePath:instancePath+"/admission/writes/queueWaitMs",schemaPath:"#/properties/admission/properties/writes/properties/queueWaitMs/maximum",keyword:"maximum",params:{comparison: "<=", limit: 120000},message:"must be <= 120000",schema:120000,parentSchema:schema11.properties.admission.properties.writes.properties.queueWaitMs,data:data39};
if(vErrors === null){
vErrors = [err105];
}
else {
vErrors.push(err105);
}
errors++;
}
if(data39 < 1 || isNaN(data39)){
const err106 = {instancePath:instancePath+"/admission/writes/queueWaitMs",schemaPath:"#/properties/admission/properties/writes/properties/queueWaitMs/minimum",keyword:"minimum",params:{comparison: ">=", limit: 1},message:"must be >= 1",schema:1,parentSchema:schema11.properties.admission.properties.writes.properties.queueWaitMs,data:data39};
if(vErrors === null){
vErrors = [err106];
}
else {
vErrors.push(err106);
}
errors++;
}
}
}
}
else {
const err107 = {instancePath:instancePath+"/admission/writes",schemaPath:"#/properties/admission/properties/writes/type",keyword:"type",params:{type: "object"},message:"must be object",schema:schema11.properties.admission.properties.writes.type,parentSchema:schema11.properties.admission.properties.writes,data:data36};
if(vErrors === null){
vErrors = [err107];
}
else {
vErrors.push(err107);
}
errors++;
}
}
if(data35.reads !== undefined){
let data40 = data35.reads;
if(data40 && typeof data40 == "object" && !Array.isArray(data40)){
for(const key6 in data40){
if(!(((key6 === "concurrency") || (key6 === "queue")) || (key6 === "queueWaitMs"))){
const err108 = {instancePath:instancePath+"/admission/reads",schemaPath:"#/properties/admission/properties/reads/additionalProperties",keyword:"additionalProperties",params:{additionalProperty: key6},message:"must NOT have additional properties",schema:false,parentSchema:schema11.properties.admission.properties.reads,data:data40};
if(vErrors === null){
vErrors = [err108];
}
else {
vErrors.push(err108);
}
errors++;
}
}
if(data40.concurrency !== undefined){
let data41 = data40.concurrency;
if(!(((typeof data41 == "number") && (!(data41 % 1) && !isNaN(data41))) && (isFinite(data41)))){
const err109 = {instancePath:instancePath+"/admission/reads/concurrency",schemaPath:"#/properties/admission/properties/reads/properties/concurrency/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.admission.properties.reads.properties.concurrency.type,parentSchema:schema11.properties.admission.properties.reads.properties.concurrency,data:data41};
if(vErrors === null){
vErrors = [err109];
}
else {
vErrors.push(err109);
}
errors++;
}
if((typeof data41 == "number") && (isFinite(data41))){
if(data41 > 64 || isNaN(data41)){
const err110 = {instancePath:instancePath+"/admission/reads/concurrency",schemaPath:"#/properties/admission/properties/reads/properties/concurrency/maximum",keyword:"maximum",params:{comparison: "<=", limit: 64},message:"must be <= 64",schema:64,parentSchema:schema11.properties.admission.properties.reads.properties.concurrency,data:data41};
if(vErrors === null){
vErrors = [err110];
}
else {
vErrors.push(err110);
}
errors++;
}
if(data41 < 1 || isNaN(data41)){
const err111 = {instancePath:instancePath+"/admission/reads/concurrency",schemaPath:"#/properties/admission/properties/reads/properties/concurrency/minimum",keyword:"minimum",params:{comparison: ">=", limit: 1},message:"must be >= 1",schema:1,parentSchema:schema11.properties.admission.properties.reads.properties.concurrency,data:data41};
if(vErrors === null){
vErrors = [err111];
}
else {
vErrors.push(err111);
}
errors++;
}
}
}
if(data40.queue !== undefined){
let data42 = data40.queue;
if(!(((typeof data42 == "number") && (!(data42 % 1) && !isNaN(data42))) && (isFinite(data42)))){
const err112 = {instancePath:instancePath+"/admission/reads/queue",schemaPath:"#/properties/admission/properties/reads/properties/queue/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.admission.properties.reads.properties.queue.type,parentSchema:schema11.properties.admission.properties.reads.properties.queue,data:data42};
if(vErrors === null){
vErrors = [err112];
}
else {
vErrors.push(err112);
}
errors++;
}
if((typeof data42 == "number") && (isFinite(data42))){
if(data42 > 100000 || isNaN(data42)){
const err113 = {instancePath:instancePath+"/admission/reads/queue",schemaPath:"#/properties/admission/properties/reads/properties/queue/maximum",keyword:"maximum",params:{comparison: "<=", limit: 100000},message:"must be <= 100000",schema:100000,parentSchema:schema11.properties.admission.properties.reads.properties.queue,data:data42};
if(vErrors === null){
vErrors = [err113];
}
else {
vErrors.push(err113);
}
errors++;
}
if(data42 < 0 || isNaN(data42)){
const err114 = {instancePath:instancePath+"/admission/reads/queue",schemaPath:"#/properties/admission/properties/reads/properties/queue/minimum",keyword:"minimum",params:{comparison: ">=", limit: 0},message:"must be >= 0",schema:0,parentSchema:schema11.properties.admission.properties.reads.properties.queue,data:data42};
if(vErrors === null){
vErrors = [err114];
}
else {
vErrors.push(err114);
}
errors++;
}
}
}
if(data40.queueWaitMs !== undefined){
let data43 = data40.queueWaitMs;
if(!(((typeof data43 == "number") && (!(data43 % 1) && !isNaN(data43))) && (isFinite(data43)))){
const err115 = {instancePath:instancePath+"/admission/reads/queueWaitMs",schemaPath:"#/properties/admission/properties/reads/properties/queueWaitMs/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.admission.properties.reads.properties.queueWaitMs.type,parentSchema:schema11.properties.admission.properties.reads.properties.queueWaitMs,data:data43};
if(vErrors === null){
vErrors = [err115];
}
else {
vErrors.push(err115);
}
errors++;
}
if((typeof data43 == "number") && (isFinite(data43))){
if(data43 > 120000 || isNaN(data43)){
const err116 = {instancePath:instancePath+"/admission/reads/queueWaitMs",schemaPath:"#/properties/admission/properties/reads/properties/queueWaitMs/maximum",keyword:"maximum",params:{comparison: "<=", limit: 120000},message:"must be <= 120000",schema:120000,parentSchema:schema11.properties.admission.properties.reads.properties.queueWaitMs,data:data43};
if(vErrors === null){
vErrors = [err116];
}
else {
vErrors.push(err116);
}
errors++;
}
if(data43 < 1 || isNaN(data43)){
const err117 = {instancePath:instancePath+"/admission/reads/queueWaitMs",schemaPath:"#/properties/admission/properties/reads/properties/queueWaitMs/minimum",keyword:"minimum",params:{comparison: ">=", limit: 1},message:"must be >= 1",schema:1,parentSchema:schema11.properties.admission.properties.reads.properties.queueWaitMs,data:data43};
if(vErrors === null){
vErrors = [err117];
}
else {
vErrors.push(err117);
}
errors++;
}
}
}
}
else {
const err118 = {instancePath:instancePath+"/admission/reads",schemaPath:"#/properties/admission/properties/reads/type",keyword:"type",params:{type: "object"},message:"must be object",schema:schema11.properties.admission.properties.reads.type,parentSchema:schema11.properties.admission.properties.reads,data:data40};
if(vErrors === null){
vErrors = [err118];
}
else {
vErrors.push(err118);
}
errors++;
}
}
if(data35.databaseSlots !== undefined){
let data44 = data35.databaseSlots;
if(!(((typeof data44 == "number") && (!(data44 % 1) && !isNaN(data44))) && (isFinite(data44)))){
const err119 = {instancePath:instancePath+"/admission/databaseSlots",schemaPath:"#/properties/admission/properties/databaseSlots/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.admission.properties.databaseSlots.type,parentSchema:schema11.properties.admission.properties.databaseSlots,data:data44};
if(vErrors === null){
vErrors = [err119];
}
else {
vErrors.push(err119);
}
errors++;
}
if((typeof data44 == "number") && (isFinite(data44))){
if(data44 > 64 || isNaN(data44)){
const err120 = {instancePath:instancePath+"/admission/databaseSlots",schemaPath:"#/properties/admission/properties/databaseSlots/maximum",keyword:"maximum",params:{comparison: "<=", limit: 64},message:"must be <= 64",schema:64,parentSchema:schema11.properties.admission.properties.databaseSlots,data:data44};
if(vErrors === null){
vErrors = [err120];
}
else {
vErrors.push(err120);
}
errors++;
}
if(data44 < 1 || isNaN(data44)){
const err121 = {instancePath:instancePath+"/admission/databaseSlots",schemaPath:"#/properties/admission/properties/databaseSlots/minimum",keyword:"minimum",params:{comparison: ">=", limit: 1},message:"must be >= 1",schema:1,parentSchema:schema11.properties.admission.properties.databaseSlots,data:data44};
if(vErrors === null){
vErrors = [err121];
}
else {
vErrors.push(err121);
}
errors++;
}
}
}
if(data35.retryAfterSeconds !== undefined){
let data45 = data35.retryAfterSeconds;
if(!(((typeof data45 == "number") && (!(data45 % 1) && !isNaN(data45))) && (isFinite(data45)))){
const err122 = {instancePath:instancePath+"/admission/retryAfterSeconds",schemaPath:"#/properties/admission/properties/retryAfterSeconds/type",keyword:"type",params:{type: "integer"},message:"must be integer",schema:schema11.properties.admission.properties.retryAfterSeconds.type,parentSchema:schema11.properties.admission.properties.retryAfterSeconds,data:data45};
if(vErrors === null){
vErrors = [err122];
}
else {
vErrors.push(err122);
}
errors++;
}
if((typeof data45 == "number") && (isFinite(data45))){
if(data45 > 3600 || isNaN(data45)){
const err123 = {instancePath:instancePath+"/admission/retryAfterSeconds",schemaPath:"#/properties/admission/properties/retryAfterSeconds/maximum",keyword:"maximum",params:{comparison: "<=", limit: 3600},message:"must be <= 3600",schema:3600,parentSchema:schema11.properties.admission.properties.retryAfterSeconds,data:data45};
if(vErrors === null){
vErrors = [err123];
}
else {
vErrors.push(err123);
}
errors++;
}
if(data45 < 1 || isNaN(data45)){
const err124 = {instancePath:instancePath+"/admission/retryAfterSeconds",schemaPath:"#/properties/admission/properties/retryAfterSeconds/minimum",keyword:"minimum",params:{comparison: ">=", limit: 1},message:"must be >= 1",schema:1,parentSchema:schema11.properties.admission.properties.retryAfterSeconds,data:data45};
if(vErrors === null){
vErrors = [err124];
}
else {
vErrors.push(err124);
}
errors++;
}
}
}
}
else {
const err125 = {instancePath:instancePath+"/admission",schemaPath:"#/properties/admission/type",keyword:"type",params:{type: "object"},message:"must be object",schema:schema11.properties.admission.type,parentSchema:schema11.properties.admission,data:data35};
if(vErrors === null){
vErrors = [err125];
}
else {
vErrors.push(err125);
}
errors++;
}
}
}
else {
const err126 = {instancePath,schemaPath:"#/type",keyword:"type",params:{type: "object"},message:"must be object",schema:schema11.type,parentSchema:schema11,data};
if(vErrors === null){
vErrors = [err126];
}
else {
vErrors.push(err126);
}
errors++;
}
validate10.errors = vErrors;
return errors === 0;
}

